"""``edge-inspect bench``'s arguments and handler; the work (each variant timed, the table, JSON) is
bench.py's, imported when the command runs: it loads the bundles."""

from __future__ import annotations

import argparse

from ..errors import UserError


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    recipe = None
    if args.config:
        from ..config import load_config

        config, _ = load_config(args.config)
        chosen = config.recipe(args.recipe)
        if chosen is None:
            raise UserError(f"recipe {args.recipe} is not in {args.config}")
        recipe = chosen.model_dump()
    for bundle in args.bundle:
        from ..vlm.bundle import load_bundle_files

        load_bundle_files(bundle)
    return run_bench(
        args.bundle,
        args.provider,
        args.frames,
        args.runs,
        args.warmup,
        args.json,
        recipe,
        verify=args.verify,
        backend=args.backend,
        step_threads=args.step_threads,
        interleave=args.interleave,
        spin=args.spin,
        jump_forward=args.jump_forward,
    )


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 0 or c > 1024 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts 0-1024 separated by commas, e.g. 2,1")
    return counts


def _spin_settings(text: str) -> list[bool]:
    words = {"on": True, "off": False}
    settings = [words.get(x.strip().lower()) for x in text.split(",")]
    chosen = [s for s in settings if s is not None]
    if not chosen or len(chosen) != len(settings):
        raise argparse.ArgumentTypeError(f"{text!r}: on and/or off separated by commas, e.g. on,off")
    return chosen


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="per-stage latency of bundles side by side")
    bench.add_argument("bundle", nargs="+", help="bundles to compare (e.g. fp32, int8, int4 copies)")
    bench.add_argument("--config", help="station.yaml whose recipe to run (default: the demo recipe)")
    bench.add_argument("--recipe", type=int, default=1, help="recipe number in --config")
    bench.add_argument("--provider", default="cpu", help="ONNX Runtime provider: tensorrt, cuda, cpu or auto")
    bench.add_argument("--frames", type=int, default=8, help="different generated parts to cycle through")
    bench.add_argument("--runs", type=int, default=20, help="timed inspections per bundle")
    bench.add_argument("--warmup", type=int, default=3, help="untimed inspections first")
    bench.add_argument("--json", default="work/bench.json", help="where the figures are written")
    bench.add_argument(
        "--backend",
        choices=["onnxruntime", "tensorrt"],
        default="onnxruntime",
        help="tensorrt: the bundles' engines (python -m tools.export trt on this device)",
    )
    bench.add_argument(
        "--step-threads",
        type=_thread_counts,
        default=None,
        metavar="N[,N...]",
        help="intra-op threads of the decode-step graph, one row per bundle and count side by side "
        "(default: the runtime's, 1; 0 = one per core like the other graphs)",
    )
    bench.add_argument(
        "--spin",
        type=_spin_settings,
        default=None,
        metavar="on|off[,...]",
        help="worker threads busy-wait between kernels during a run (on) or sleep (off), one row per "
        "bundle and setting side by side (default: the runtime's, off)",
    )
    bench.add_argument(
        "--jump-forward",
        type=_spin_settings,
        default=None,
        metavar="on|off[,...]",
        help="decode the tokens a pointing grammar forces without sampling, in one run (on) or one "
        "step each (off); one row per bundle and setting side by side (default: on)",
    )
    bench.add_argument(
        "--interleave",
        action="store_true",
        help="all variants in one process, inspections round-robin: steadier ratios on a busy "
        "machine (peak RSS is then the process's, for all)",
    )
    bench.add_argument(
        "--verify",
        nargs="*",
        default=[],
        help="accuracy-gate reports (`python -m tools.distill verify --json`) of the other bundles "
        "against the first; shown in the table",
    )
    bench.set_defaults(func=cmd_bench)
