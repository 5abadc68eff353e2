"""``python -m tools.export``: the export toolchain's command line.

  onnx     HF Molmo2 checkpoint folder → model bundle
  tiny     write a small random Molmo2 checkpoint (local tokenizer) for tests and trials
  example  tiny checkpoint → bundle → inspect a drawn part, end to end
  bench    this engine vs transformers generate, and prefix reuse vs none; prints a table, writes JSON
  hf-bench the transformers reference row for `edge-inspect bench`: a checkpoint on the same recipe
  quantize decoder INT8 / INT4 / FP16 copies of a bundle (vision stays fp32 unless --vision int8/fp16)
  lean     a copy of an older fp32 bundle with the lean decoder and the decode-step graph (checked to compute the same)
  trt      TensorRT engines for this device (graph checks and trtexec lines work anywhere)

The accuracy gate for a quantized bundle is `python -m tools.distill verify` (it evaluates).
Layering: tools/molmo2 (checkpoints) <- tools/export <- tools/distill.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from edge_inspect.cli import show_defaults
from edge_inspect.vlm.bundle import BundleError
from tools.molmo2.errors import CheckpointError


def _cmd_onnx(args: argparse.Namespace, write_graphs: Callable[..., None] | None = None) -> int:
    """``write_graphs``: in place of onnx_bundle.export_graphs (tests: a failure while writing)."""
    from .onnx_bundle import export_bundle, export_graphs

    out = export_bundle(args.checkpoint, args.out, overwrite=args.overwrite, write_graphs=write_graphs or export_graphs)
    print(f"bundle written to {out}")
    return 0


def _cmd_tiny(args: argparse.Namespace) -> int:
    from tools.molmo2.tiny import make_tiny_checkpoint

    out = make_tiny_checkpoint(args.out, seed=args.seed, size=args.size)
    print(f"tiny Molmo2 checkpoint written to {out}")
    return 0


def _cmd_example(args: argparse.Namespace) -> int:
    from .example import run_example

    return run_example(Path(args.work))


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(
        Path(args.work), Path(args.json), repeats=args.repeats, max_new_tokens=args.max_new_tokens, size=args.size
    )


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize import quantize_bundle

    keep = args.keep if args.keep is not None else ([] if args.no_keep_lm_head else ["lm_head"])
    out = quantize_bundle(
        args.bundle,
        args.out,
        vision=args.vision,
        decoder=args.decoder,
        calibration=args.calibration,
        keep=keep,
        overwrite=args.overwrite,
    )
    print(f"quantized bundle written to {out}")
    return 0


def _cmd_lean(args: argparse.Namespace) -> int:
    from .lean_bundle import lean_bundle

    out, difference = lean_bundle(args.bundle, args.out, overwrite=args.overwrite)
    step = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["lean_decoder"].get("step_max_difference")
    print(
        f"bundle with the lean decoder written to {out} (max |difference| to the source decoder {difference:.1e}; "
        + (f"decode-step graph written, max |difference| {step:.1e})" if step is not None else "no decode-step graph)")
    )
    return 0


def _cmd_hf_bench(args: argparse.Namespace) -> int:
    from .hf_bench import run_hf_bench

    return run_hf_bench(
        Path(args.hf_checkpoint),
        args.config,
        args.recipe,
        args.frames,
        args.runs,
        args.warmup,
        args.json,
        args.max_new_tokens,
    )


def _cmd_trt(args: argparse.Namespace) -> int:
    from edge_inspect.vlm.bundle import load_bundle_files

    from .trt import build_engines, check_bundle, trtexec_commands

    problems = check_bundle(Path(args.bundle))
    for p in problems:
        print(f"{p.graph}: {p.problem}")
    if problems:
        return 2
    print("graph checks: ok (no data-dependent operators, opset <= 18, static ranks)")
    print("equivalent trtexec commands (run in the bundle folder on the target device):")
    for line in trtexec_commands(load_bundle_files(args.bundle), args.precision):
        print("  " + line)
    if args.check_only:
        return 0
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print(
            "tools.export: error: TensorRT is not installed here; build on the target device "
            "(pip install '.[trt]' on x86, JetPack's python3-libnvinfer on Jetson)",
            file=sys.stderr,
        )
        return 2
    out = build_engines(args.bundle, args.precision, args.workspace_mb)
    print(f"engines written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("onnx", help="export a HF Molmo2 checkpoint to a bundle")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="HF checkpoint folder (config.json, safetensors, tokenizer, processor configs)",
    )
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.set_defaults(func=_cmd_onnx)

    p = sub.add_parser("tiny", help="write a small random Molmo2 checkpoint")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    p.add_argument("--size", choices=["tiny", "small"], default="tiny", help="tiny (tests) or small (benchmarks)")
    p.set_defaults(func=_cmd_tiny)

    p = sub.add_parser("example", help="end-to-end run on a small random model")
    p.add_argument("--work", default="work/example", help="folder for the checkpoint, bundle and image")
    p.set_defaults(func=_cmd_example)

    p = sub.add_parser("bench", help="latency: this engine vs transformers, prefix reuse vs none")
    p.add_argument("--work", default="work/bench", help="folder for the model, bundle and images")
    p.add_argument("--json", default="work/bench/bench.json", help="where the figures are written")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (the median is reported)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per prompt")
    p.add_argument("--size", choices=["tiny", "small"], default="small", help="model size")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("hf-bench", help="transformers reference row for edge-inspect bench")
    p.add_argument("--hf-checkpoint", required=True, help="the HF checkpoint the bundles were exported from")
    p.add_argument("--config", help="station.yaml whose recipe to run (default: the demo recipe)")
    p.add_argument("--recipe", type=int, default=1, help="recipe number in --config")
    p.add_argument("--frames", type=int, default=8, help="different generated parts to cycle through")
    p.add_argument("--runs", type=int, default=20, help="timed inspections")
    p.add_argument("--warmup", type=int, default=3, help="untimed inspections first")
    p.add_argument("--max-new-tokens", type=int, default=96, help="cap on generated tokens per check")
    p.add_argument("--json", help="write the row here (same row format as edge-inspect bench's JSON)")
    p.set_defaults(func=_cmd_hf_bench)

    p = sub.add_parser("quantize", help="quantized copy of a bundle")
    p.add_argument("--bundle", required=True, help="full-precision bundle to quantize")
    p.add_argument("--out", required=True, help="quantized bundle folder to write")
    p.add_argument(
        "--vision",
        choices=["fp32", "int8", "fp16"],
        default="fp32",
        help="vision graph precision (default fp32: the ViT decides where points land; int8 needs "
        "--calibration, fp16 is for GPUs)",
    )
    p.add_argument(
        "--decoder", choices=["fp32", "int8", "int4", "fp16"], default="int8", help="decoder weight precision"
    )
    p.add_argument("--calibration", help="folder of calibration images (needed for vision int8)")
    p.add_argument(
        "--keep",
        action="append",
        metavar="REGEX",
        help="decoder node names kept at full precision (default: the LM head); repeatable",
    )
    p.add_argument("--no-keep-lm-head", action="store_true", help="quantize the LM head too")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing bundle folder (only once the new one is complete)"
    )
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser(
        "lean",
        help="copy of an older fp32 bundle with the lean decoder and decode-step graphs (same outputs, faster steps)",
    )
    p.add_argument(
        "--bundle", required=True, help="fp32 bundle whose decoder was traced (exported before the lean graph)"
    )
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing bundle folder (only once the new one is complete)"
    )
    p.set_defaults(func=_cmd_lean)

    p = sub.add_parser("trt", help="build TensorRT engines on this device")
    p.add_argument("--bundle", required=True, help="bundle whose graphs become engines")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default="fp16",
        help="int8 needs a bundle quantized with QDQ (quantize --vision int8)",
    )
    p.add_argument("--workspace-mb", type=int, default=2048, help="TensorRT builder workspace")
    p.add_argument("--check-only", action="store_true", help="graph checks and trtexec lines; build nothing")
    p.set_defaults(func=_cmd_trt)
    return show_defaults(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    return run_command(args)


def run_command(args: argparse.Namespace, command: Callable[[argparse.Namespace], int] | None = None) -> int:
    """Run the parsed command (or ``command`` in its place: the same handler with a seam bound); a
    CheckpointError or BundleError is one line on stderr and exit 2."""
    try:
        return (command or args.func)(args)
    except (CheckpointError, BundleError) as err:
        print(f"tools.export: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
