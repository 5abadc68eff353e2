"""What tools/export/trt_bench.sh needs, checked one by one: each line says found (with its version)
or missing (with how to get it, on a Jetson and on an x86 machine with an NVIDIA GPU).

    python -m tools.export.prereqs          exit 0 when everything needed is there, else 2

Prints every line before it decides, so that the owner of a machine can fix everything in one go.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from edge_inspect.vlm.jetson import read_jetson


@dataclass
class Requirement:
    name: str
    found: str | None  # version or location, None when missing
    jetson_hint: str
    x86_hint: str
    needed: bool = True


def _module(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # a binding whose native library is missing raises more than ImportError
        return None
    return str(getattr(module, "__version__", "installed"))


def _cuda_python() -> str | None:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        if _module(name) is not None:
            return _module("cuda") or "installed"
    return None


def _gpu(root: Path) -> str | None:
    if read_jetson(root) is not None:
        return "Jetson integrated GPU"
    if (root / "dev/nvidia0").exists():
        return "/dev/nvidia0"
    return None


def requirements(root: Path = Path("/")) -> list[Requirement]:
    ort_providers: list[str] = []
    try:
        import onnxruntime

        ort_providers = onnxruntime.get_available_providers()
    except ImportError:
        pass
    gpu_ort = "TensorrtExecutionProvider" in ort_providers or "CUDAExecutionProvider" in ort_providers
    jetson = read_jetson(root)
    jetpack = f"JetPack {jetson.jetpack}" if jetson and jetson.jetpack else "your JetPack"
    return [
        Requirement("Python >= 3.10", sys.version.split()[0] if sys.version_info >= (3, 10) else None,
                    "JetPack 6 ships 3.10, JetPack 7 ships 3.12", "install Python 3.10-3.12"),
        Requirement("NVIDIA GPU", _gpu(root), "run on the Jetson itself (/etc/nv_tegra_release)",
                    "a machine with an NVIDIA GPU and its driver (/dev/nvidia0)"),
        Requirement("TensorRT Python bindings", _module("tensorrt"),
                    "apt install python3-libnvinfer (JetPack); venv with --system-site-packages",
                    "pip install '.[trt]' (tensorrt from PyPI)"),
        Requirement("cuda-python", _cuda_python(), "pip install 'cuda-python<13' matching JetPack's CUDA",
                    "pip install cuda-python (matching the driver's CUDA)"),
        Requirement("onnx", _module("onnx"), "pip install onnx", "pip install onnx"),
        Requirement("onnxruntime with a GPU provider", ", ".join(ort_providers) if gpu_ort else None,
                    f"onnxruntime-gpu for {jetpack} from NVIDIA's Jetson index (docs/jetson.md)",
                    "pip install onnxruntime-gpu", needed=False),
        Requirement("trtexec", shutil.which("trtexec") or (str(p) if (p := Path("/usr/src/tensorrt/bin/trtexec")).exists() else None),
                    "part of JetPack: /usr/src/tensorrt/bin/trtexec", "TensorRT's tar or deb package",
                    needed=False),
    ]  # fmt: skip


def report(reqs: list[Requirement], on_jetson: bool) -> tuple[list[str], bool]:
    lines, ok = [], True
    for r in reqs:
        if r.found:
            lines.append(f"  ok       {r.name}: {r.found}")
            continue
        ok = ok and not r.needed
        hint = r.jetson_hint if on_jetson else r.x86_hint
        lines.append(f"  {'MISSING' if r.needed else 'optional'} {r.name}: {hint}")
    return lines, ok


def main() -> int:
    reqs = requirements()
    lines, ok = report(reqs, read_jetson() is not None)
    print("What trt_bench.sh needs on this machine:")
    print("\n".join(lines))
    if not ok:
        print("Install what is MISSING above, then run tools/export/trt_bench.sh again and send back its tables.")
    return 0 if ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
