"""``edge-inspect try``'s arguments and handler; the work (overlays, the table, JSON) is trial.py's,
imported when the command runs: it needs OpenCV and the model."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_try(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .trial import run_try

    config, _ = load_config(args.config, bundle=args.bundle)
    model = config.model.load()
    return run_try(config, model, [Path(p) for p in args.images], args.recipe or [], Path(args.out))


def register(sub: argparse._SubParsersAction) -> None:
    trial = sub.add_parser("try", help="run a recipe on image files: overlays, a table and JSON (no PLC, no log)")
    trial.add_argument("config", help="station.yaml")
    trial.add_argument("images", nargs="+", help="image files or folders of images")
    trial.add_argument(
        "--recipe", type=int, action="append", help="recipe number (repeatable; default the config's triggers.recipe)"
    )
    trial.add_argument("--out", default="work/try", help="folder for the overlay PNGs and try.json")
    trial.add_argument("--bundle", help="model bundle (overrides model.bundle)")
    trial.set_defaults(func=cmd_try)
