"""The ``edge-inspect`` command. Thin: parses arguments and calls the modules that do the work.

User mistakes (a bad bundle, a missing image) print one line on stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user gave us; reported in one line, exit code 2."""


def _cmd_model_verify(args: argparse.Namespace) -> int:
    from .vlm.bundle import load_bundle_files

    bundle = load_bundle_files(args.bundle)
    files = bundle.manifest["files"]
    print(f"{bundle.path}: ok ({len(files)} files verified, manifest sha256 {bundle.sha256[:16]})")
    return 0


def _read_image(path: Path):
    import cv2

    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise UserError(f"{path}: not an image OpenCV can read")
    return frame


def _cmd_model_ask(args: argparse.Namespace) -> int:
    from .vlm import load_bundle

    if not (args.point or args.yes_no or args.generate):
        raise UserError("give at least one of --point, --yes-no or --generate")
    model = load_bundle(args.bundle, providers=args.provider)
    frame = _read_image(Path(args.image))
    image = model.encode(frame, order="bgr")
    results = []
    for prompt in args.point or []:
        p = model.point(image, prompt, max_new_tokens=args.max_new_tokens)
        results.append({
            "kind": "point", "prompt": prompt, "text": p.text, "count": p.answer.count,
            "points": [[round(pt.x, 4), round(pt.y, 4)] for pt in p.answer.points],
            "malformed": p.answer.malformed, "timings_ms": p.timings_ms,
        })  # fmt: skip
    for question in args.yes_no or []:
        a = model.ask_yes_no(image, question)
        results.append({
            "kind": "yes_no", "prompt": question, "answer": "yes" if a.answer else "no",
            "p_yes": round(a.p_yes, 4), "margin": round(a.margin, 4), "mass": round(a.mass, 4), "timings_ms": a.timings_ms,
        })  # fmt: skip
    for prompt in args.generate or []:
        g = model.generate(image, prompt, max_new_tokens=args.max_new_tokens)
        results.append({"kind": "generate", "prompt": prompt, "text": g.text, "timings_ms": g.timings_ms})
    print(json.dumps({"image": args.image, "encode_ms": image.timings_ms, "results": results}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-inspect", description="Line-side vision inspection appliance.")
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="model bundles").add_subparsers(dest="model_command", required=True)
    verify = model.add_parser("verify", help="check a bundle's files against its manifest")
    verify.add_argument("bundle")
    verify.set_defaults(func=_cmd_model_verify)

    ask = model.add_parser("ask", help="run prompts on one image file")
    ask.add_argument("bundle")
    ask.add_argument("image")
    ask.add_argument("--point", action="append", metavar="PROMPT", help='e.g. "Point to any scratches."')
    ask.add_argument("--yes-no", action="append", metavar="QUESTION", help='e.g. "Is the label present?"')
    ask.add_argument("--generate", action="append", metavar="PROMPT", help="free-text answer")
    ask.add_argument("--provider", default="cpu", help="tensorrt, cuda, cpu or auto (default cpu)")
    ask.add_argument("--max-new-tokens", type=int, default=64)
    ask.set_defaults(func=_cmd_model_ask)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .vlm.bundle import BundleError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, BundleError, ValueError) as err:
        print(f"edge-inspect: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
