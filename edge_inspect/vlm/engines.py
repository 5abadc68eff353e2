"""TensorRT engines in a bundle: their metadata, and whether they may run on this machine.

Engines are built for one GPU and one TensorRT version (on the Jetson itself). A bundle whose
engines name another GPU or TensorRT version is refused with one line saying why, and the
runtime falls back to ONNX Runtime. No import here needs a GPU.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .jetson import read_jetson

ENGINE_DIR = "engines"
METADATA = "metadata.json"


@dataclass(frozen=True)
class Environment:
    tensorrt: str | None  # installed TensorRT version, None when not installed
    gpu: str | None  # GPU name, None when there is none
    compute_capability: str | None  # e.g. "8.7" (Orin)
    l4t: str | None = None  # the Jetson's L4T release (JetPack), None off a Jetson
    onnxruntime: str | None = None  # installed ONNX Runtime version, None when not installed

    def cache_key(self, bundle_sha256: str) -> str:
        """Names a TensorRT engine cache: a cache built for another bundle (another model version: its
        manifest's sha256 is the version's id in the model store), ONNX Runtime, TensorRT, GPU or
        JetPack has another key and is never loaded."""
        parts: tuple[str | None, ...] = (bundle_sha256, self.tensorrt, self.gpu, self.compute_capability, self.l4t)
        if self.onnxruntime is not None:  # keys made before ONNX Runtime was part of them stay as they were
            parts += (f"onnxruntime {self.onnxruntime}",)
        return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)


def detect_environment(root: Path = Path("/")) -> Environment:
    jetson = read_jetson(root)
    l4t = jetson.l4t if jetson else None
    ort = _onnxruntime_version()
    try:
        import tensorrt
    except ImportError:
        return Environment(None, None, None, l4t, ort)
    gpu = capability = None
    try:
        from cuda.bindings import runtime as cudart  # cuda-python
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError:
            cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            gpu = props.name.decode(errors="replace").strip("\0 ")
            capability = f"{props.major}.{props.minor}"
    return Environment(tensorrt.__version__, gpu, capability, l4t, ort)


def read_metadata(bundle_path: Path) -> dict | None:
    path = bundle_path / ENGINE_DIR / METADATA
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return {"invalid": f"{path}: not valid JSON ({err})"}


def compatibility(metadata: dict | None, env: Environment, bundle_sha256: str | None = None) -> str | None:
    """None when the engines can run here; otherwise one line saying why not. Engines are keyed by
    the bundle they were built from, the TensorRT version, the GPU and the L4T (JetPack) release."""
    if metadata is None:
        return "the bundle has no TensorRT engines (build them with `python -m tools.export trt` on this device)"
    if "invalid" in metadata:
        return metadata["invalid"]
    if env.tensorrt is None:
        return "TensorRT is not installed on this machine"
    built_trt, built_gpu = metadata.get("tensorrt_version"), metadata.get("gpu_name")
    if built_trt != env.tensorrt:
        return f"engines were built with TensorRT {built_trt}, this machine has TensorRT {env.tensorrt}"
    if bundle_sha256 is not None and metadata.get("bundle_manifest_sha256") != bundle_sha256:
        return "engines were built from another bundle (its manifest's sha256 differs); rebuild them"
    if metadata.get("l4t") != env.l4t:
        built_on = f"L4T {metadata['l4t']}" if metadata.get("l4t") else "no L4T release on record"
        here = f"L4T {env.l4t}" if env.l4t else "no L4T (not a Jetson)"
        return f"engines were built under {built_on}, this machine runs {here}; rebuild them here"
    if env.gpu is None:
        return "no CUDA GPU found on this machine"
    if built_gpu != env.gpu or metadata.get("compute_capability") != env.compute_capability:
        return (
            f"engines were built for {built_gpu} (sm {metadata.get('compute_capability')}), "
            f"this machine has {env.gpu} (sm {env.compute_capability})"
        )
    return None
