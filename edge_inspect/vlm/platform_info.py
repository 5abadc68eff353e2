"""What this machine offers the model, read at start: ONNX Runtime and its providers, TensorRT, the
CUDA device, and on a Jetson its L4T / JetPack release and power mode.

On a Jetson the GPU pieces do not come from PyPI (onnxruntime-gpu from NVIDIA's Jetson index,
TensorRT from JetPack), so a station that silently runs on the CPU is the common failure: every
provider that is not used gets a reason here. Files are read under ``root`` so that tests can
fabricate a Jetson.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backends import PROVIDERS
from .engines import detect_environment
from .jetson import Jetson, read_jetson


@dataclass
class PlatformInfo:
    python: str
    machine: str
    onnxruntime: str | None
    available_providers: list[str]
    tensorrt: str | None = None
    gpu: str | None = None
    compute_capability: str | None = None
    jetson: Jetson | None = None
    backend: str | None = None  # what the model runs on, e.g. "onnxruntime[cpu]" or "tensorrt-10.3.0"
    in_use: list[str] = field(default_factory=list)  # the providers the sessions really run on
    not_used: dict[str, str] = field(default_factory=dict)  # provider name → why it is not used

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """For the log at start and `edge-inspect doctor`."""
        out = [f"Python {self.python} on {self.machine}"]
        if self.jetson:
            j = self.jetson
            out.append(
                f"Jetson: {j.model or 'model unknown'}, L4T {j.l4t or '?'} (JetPack {j.jetpack or '?'}), "
                f"power mode {j.power_mode or 'not readable'}"
            )
        out.append(
            f"ONNX Runtime {self.onnxruntime or 'not installed'}: providers {', '.join(self.available_providers) or 'none'}"
        )
        out.append(f"TensorRT {self.tensorrt or 'not installed'}")
        if self.gpu:
            out.append(f"CUDA device: {self.gpu} (compute capability {self.compute_capability})")
        else:
            out.append("CUDA device: none found")
        if self.backend:
            out.append(f"model runs on: {self.backend} ({', '.join(self.in_use) or 'no session'})")
        out += [f"{name} not used: {why}" for name, why in self.not_used.items()]
        return out


def _gpu_runtime_hint(jetson: Jetson | None) -> str:
    if jetson is not None:
        release = f"JetPack {jetson.jetpack}" if jetson.jetpack else "this JetPack"
        return f"onnxruntime-gpu for {release} is needed (NVIDIA's Jetson wheel index, docs/jetson.md)"
    return "onnxruntime-gpu is needed (this onnxruntime build runs on the CPU only)"


def why_not_used(
    requested: str | Sequence[str], available: list[str], in_use: list[str], jetson: Jetson | None
) -> dict[str, str]:
    """For each GPU provider the model does not run on, one line saying why."""
    names = (
        ["tensorrt", "cuda", "cpu"] if requested == "auto" else [requested] if isinstance(requested, str) else requested
    )
    reasons = {}
    for name in ("tensorrt", "cuda"):
        provider = PROVIDERS[name]
        if provider in in_use:
            continue
        label = "TensorRT provider" if name == "tensorrt" else "CUDA provider"
        if provider not in available:
            reasons[name] = f"{label} not installed: {_gpu_runtime_hint(jetson)}"
        elif name not in names:
            reasons[name] = f"{label} installed but not asked for (model.providers: {requested})"
        else:
            reasons[name] = (
                f"{label} could not start (TensorRT/CUDA libraries or the GPU missing); onnxruntime fell back, see its log"
            )
    return reasons


def collect(model=None, requested: str | Sequence[str] = "auto", root: Path = Path("/"), available=None, env=None):
    """Everything above, for ``model`` (a VisionLanguageModel, or None before one is loaded)."""
    try:
        import onnxruntime as ort

        version = ort.__version__
        available = list(ort.get_available_providers()) if available is None else available
    except ImportError:
        version, available = None, available or []
    env = detect_environment(root) if env is None else env
    jetson = read_jetson(root)
    info = PlatformInfo(
        python=platform.python_version(),
        machine=platform.machine(),
        onnxruntime=version,
        available_providers=available,
        tensorrt=env.tensorrt,
        gpu=env.gpu,
        compute_capability=env.compute_capability,
        jetson=jetson,
    )
    backend = getattr(model, "backend", None)
    if backend is not None:
        info.backend = getattr(backend, "name", type(backend).__name__)
        info.in_use = list(getattr(backend, "providers_in_use", [])) or [backend.name]
        missing = getattr(backend, "engines_missing", None)  # the TensorRT provider's engines not built yet
        reason = getattr(model, "fallback_reason", None)
        if reason and reason != missing:
            info.not_used["tensorrt-engines"] = f"TensorRT engines refused: {reason}"
        for graph, why in getattr(backend, "unused_graphs", {}).items():
            info.not_used[f"{graph} graph"] = why
        if hasattr(backend, "providers_in_use"):
            info.not_used.update(why_not_used(requested, available, info.in_use, jetson))
        if missing:
            info.not_used["tensorrt"] = missing
    return info
