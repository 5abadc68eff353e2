"""``edge-inspect modbus map``: the effective Modbus map (a config's mode and overrides, or a mode's default)
as a markdown table, CSV or JSON."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError


def cmd_map(args: argparse.Namespace) -> int:
    from ..plc.signals import build_map, export_map

    if args.config:  # the effective map: the config's mode and overrides
        from ..config import load_config

        config, _ = load_config(args.config)
        if args.mode and args.mode != config.plc.mode:
            raise UserError(f"--mode {args.mode} differs from plc.mode {config.plc.mode} in {args.config}")
        signal_map = config.plc.signal_map()
    else:
        signal_map = build_map(mode=args.mode or "server")
    sys.stdout.write(export_map(signal_map, args.format))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    modbus = sub.add_parser("modbus", help="the PLC register map").add_subparsers(dest="modbus_command", required=True)
    mmap = modbus.add_parser("map", help="print the effective Modbus map")
    mmap.add_argument("--config", help="station.yaml whose plc.mode and plc.map apply")
    mmap.add_argument("--mode", choices=["server", "client"], help="default map of this mode (default server)")
    mmap.add_argument("--format", choices=["md", "csv", "json"], default="md", help="markdown table, CSV or JSON")
    mmap.set_defaults(func=cmd_map)
