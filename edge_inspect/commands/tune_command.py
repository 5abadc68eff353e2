"""``edge-inspect tune``'s arguments and handler; the work (rates per check, recommended settings,
plots) is tune.py's, imported when the command runs: it needs OpenCV, NumPy and the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def cmd_tune(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .tune import LabelError, print_report, run_tune

    config, _ = load_config(args.config, bundle=args.bundle)
    model = config.model.load()
    try:
        report = run_tune(config, model, Path(args.labelled), args.recipe or config.triggers.recipe, Path(args.out))
    except LabelError as err:
        raise UserError(str(err)) from None
    print_report(report)
    print(f"JSON and plots in {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "tune", help="false-reject and escape rates per check on labelled images; recommended margins and limits"
    )
    tune.add_argument("config", help="station.yaml")
    tune.add_argument(
        "--labelled",
        required=True,
        help="folder with good/ and bad/ images, or a labels.csv (image, check, expected pass|fail)",
    )
    tune.add_argument("--recipe", type=int, help="recipe number (default the config's triggers.recipe)")
    tune.add_argument("--out", default="work/tune", help="folder for tune.json and the plots")
    tune.add_argument("--bundle", help="model bundle (overrides model.bundle)")
    tune.set_defaults(func=cmd_tune)
