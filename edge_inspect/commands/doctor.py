"""``edge-inspect doctor``: what this machine offers the model, and what the model would run on.

Loads the bundle named by a station config (or the demo student) with its providers, and prints the
platform (Python, ONNX Runtime and its providers, TensorRT, the CUDA device, the Jetson's L4T /
JetPack and power mode) with a reason for every GPU provider not used — the first thing to run on a
new Jetson, and what to send with a support question (``--json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..bundles import find_bundle
from ..config import StationConfig
from ..vlm import load_bundle
from ..vlm.bundle import BundleError
from ..vlm.platform_info import PlatformInfo, collect


def diagnose(config: StationConfig | None, bundle: str | None = None) -> PlatformInfo:
    """The platform, with the model of ``config`` (or ``bundle`` with providers 'auto') loaded on it."""
    if config is not None:
        model = config.model.load()
        return collect(model, config.model.providers)
    name = bundle or "demo-student"
    path, looked = find_bundle(name, Path.cwd())
    if path is None:
        raise BundleError(f"bundle {name!r} not found; looked in {', '.join(str(p) for p in looked)}")
    return collect(load_bundle(path, providers="auto", backend="auto"), "auto")


def run_doctor(config: StationConfig | None, bundle: str | None, as_json: bool) -> int:
    info = diagnose(config, bundle)
    if as_json:
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print("\n".join(info.lines()))
    return 0
