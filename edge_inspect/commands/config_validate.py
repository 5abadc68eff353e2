"""``edge-inspect config validate``: a station.yaml checked, every problem as file:line: key: message."""

from __future__ import annotations

import argparse


def cmd_validate(args: argparse.Namespace) -> int:
    from ..config import load_config

    config, sha = load_config(args.file)
    checks = sum(len(r.checks) for r in config.recipes)
    cameras = f", cameras {', '.join(c.name for c in config.cameras)}" if config.cameras else ""
    print(f"{args.file}: ok ({len(config.recipes)} recipe(s), {checks} check(s){cameras}, sha256 {sha[:16]})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="station configs").add_subparsers(dest="config_command", required=True)
    validate = config.add_parser("validate", help="check a station.yaml; every problem as file:line: key: message")
    validate.add_argument("file", help="station.yaml")
    validate.set_defaults(func=cmd_validate)
