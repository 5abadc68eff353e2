"""``edge-inspect doctor``: what this machine offers the model, and what the model would run on.

Loads the bundle named by a station config (or the demo student) with its providers, and prints the
platform (Python, ONNX Runtime and its providers, TensorRT, the CUDA device, the Jetson's L4T /
JetPack and power mode) with a reason for every GPU provider not used — the first thing to run on a
new Jetson, and what to send with a support question (``--json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model code is imported when the command runs, not to build the parser
    from ..config import StationConfig
    from ..vlm.platform_info import PlatformInfo


def diagnose(config: StationConfig | None, bundle: str | None = None, build_engines: bool = False) -> PlatformInfo:
    """The platform, with the model of ``config`` (or ``bundle`` with providers 'auto') loaded on it.
    ``build_engines``: build the TensorRT provider's engines for this bundle, TensorRT, GPU and JetPack
    now (minutes), running each kind of prompt once so that every graph gets its engine."""
    from ..bundles import find_bundle
    from ..vlm import load_bundle
    from ..vlm.bundle import BundleError
    from ..vlm.platform_info import collect

    if config is not None:
        model = config.model.load(build_engines=build_engines)
        if build_engines:
            warm_up(model)
        return collect(model, config.model.providers)
    name = bundle or "demo-student"
    path, looked = find_bundle(name, Path.cwd())
    if path is None:
        raise BundleError(f"bundle {name!r} not found; looked in {', '.join(str(p) for p in looked)}")
    model = load_bundle(path, providers="auto", backend="auto", build_engines=build_engines)
    if build_engines:
        warm_up(model)
    return collect(model, "auto")


def warm_up(model) -> None:
    """One yes/no question and one pointing prompt on a generated part: every graph runs once."""
    from ..sim import render_part

    image = model.encode(render_part(1, 320, 240).image, order="bgr")
    model.ask_yes_no(image, "Is the label present?")
    model.point(image, "Point to the screws.")


def run_doctor(config: StationConfig | None, bundle: str | None, as_json: bool, build_engines: bool = False) -> int:
    info = diagnose(config, bundle, build_engines)
    if as_json:
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print("\n".join(info.lines()))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..config import load_config

    config = load_config(args.config, bundle=args.bundle)[0] if args.config else None
    return run_doctor(config, args.bundle, args.json, args.build_engines)


def register(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="what the model runs on here: ONNX Runtime providers, TensorRT, GPU, JetPack, and why not"
    )
    doctor.add_argument(
        "config", nargs="?", help="station.yaml whose model to load (default: the demo student, 'auto')"
    )
    doctor.add_argument("--bundle", help="model bundle instead of the config's")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument(
        "--build-engines",
        action="store_true",
        help="build the TensorRT provider's engines for this bundle, TensorRT, GPU and JetPack now (minutes)",
    )
    doctor.set_defaults(func=cmd_doctor)
