"""``edge-inspect dataset export --config station.yaml OUT``: the station's reviewed inspections as
training records (commands/dataset.py; docs/model-lifecycle.md, "Labels from review")."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def cmd_export(args: argparse.Namespace) -> int:
    import yaml

    from ..config import load_storage
    from ..logbook import Store
    from .dataset import export

    config = Path(args.config)
    storage, _ = load_storage(config)
    folder = Path(storage.dir).expanduser()
    data = folder if folder.is_absolute() else config.resolve().parent / folder
    if not (data / "inspections.db").is_file():
        raise UserError(f"{data / 'inspections.db'}: no inspection log there (storage.dir in {config})")
    raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}  # load_storage has read it: it parses
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a folder (dataset export writes train.jsonl, holdout.jsonl and images/ into one)")
    store = Store(data)
    try:
        report = export(store, out, raw.get("recipes") or [])
    finally:
        store.close()
    print(report.summary(args.out))
    if report.missing_images:
        print(f"{report.missing_images} reviewed inspections left out: their frame is no longer in {data / 'images'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    dataset = sub.add_parser("dataset", help="training data from the log").add_subparsers(
        dest="dataset_command", required=True
    )
    export = dataset.add_parser(
        "export", help="reviewed inspections as distillation JSONL (train.jsonl, holdout.jsonl, images/)"
    )
    export.add_argument("out", help="folder to write (made if missing; images already there are kept)")
    export.add_argument("--config", default="station.yaml", help="the station file (its storage.dir holds the log)")
    export.set_defaults(func=cmd_export)
