"""``edge-inspect demo``'s arguments and handler; the demo station itself is demo.py's, imported when
the command runs: it builds the whole station."""

from __future__ import annotations

import argparse
from pathlib import Path


def defect_rate(text: str) -> float | None:
    """--defect-rate: a share 0..1, or 'mix' for the part generator's own mix (most parts defective)."""
    if text == "mix":
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a share from 0 to 1 (0.1 = one part in ten) nor 'mix'")
    return rate


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from .demo import run_demo

    asyncio.run(
        run_demo(
            Path(args.workdir),
            duration_s=args.duration,
            bundle=args.bundle,
            port=args.port,
            period_s=args.period,
            web_port=args.web_port,
            defect_rate=args.defect_rate,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the whole station on this machine, no hardware")
    demo.add_argument("--workdir", default="work/demo", help="folder for the SQLite log and images")
    demo.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    demo.add_argument("--bundle", help="model bundle instead of the bundled demo student")
    demo.add_argument("--port", type=int, default=5020, help="Modbus TCP port on 127.0.0.1")
    demo.add_argument("--period", type=float, default=0.5, help="seconds between PLC triggers")
    demo.add_argument("--web-port", type=int, default=8080, help="HMI port (0 = no HMI)")
    demo.add_argument(
        "--defect-rate",
        type=defect_rate,
        default=0.1,
        help="share of defective parts, as on a line; 'mix': the part generator's own mix, most parts defective",
    )
    demo.set_defaults(func=cmd_demo)
