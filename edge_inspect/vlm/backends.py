"""Inference backends: run a bundle's graphs by name. ONNX Runtime is the one backend today.

Every backend offers ``run(graph, feeds) -> dict[str, np.ndarray]`` and ``input_names(graph)``;
the generation code knows nothing else about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .bundle import GRAPHS, Bundle, BundleError

# Provider names as written in a station config → ONNX Runtime execution providers.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class Backend(Protocol):
    name: str

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def input_names(self, graph: str) -> list[str]: ...


def choose_providers(requested: str | list[str], available: list[str]) -> list[str]:
    """Resolve 'auto' or a list of names to the ONNX Runtime providers to use, best first."""
    names = ["tensorrt", "cuda", "cpu"] if requested == "auto" else requested
    if isinstance(names, str):
        names = [names]
    chosen = []
    for name in names:
        if name not in PROVIDERS:
            raise ValueError(f"unknown provider {name!r}; choose from {', '.join(PROVIDERS)} or 'auto'")
        provider = PROVIDERS[name]
        if provider in available:
            chosen.append(provider)
        elif requested != "auto":
            raise ValueError(f"provider {name!r} is not available in this onnxruntime build ({', '.join(available)})")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeBackend:
    """One ONNX Runtime session per graph of the bundle."""

    def __init__(self, bundle: Bundle, providers: str | list[str] = "cpu", threads: int = 0):
        import onnxruntime as ort

        self.providers = choose_providers(providers, ort.get_available_providers())
        self.name = f"onnxruntime[{','.join(p.removesuffix('ExecutionProvider').lower() for p in self.providers)}]"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self._sessions = {}
        for graph in GRAPHS:
            path: Path = bundle.graph_path(graph)
            try:
                self._sessions[graph] = ort.InferenceSession(str(path), options, providers=self.providers)
            except Exception as err:  # onnxruntime raises its own exception types
                raise BundleError(f"{path}: onnxruntime cannot load it: {str(err).splitlines()[0]}") from None
        self._inputs = {g: [i.name for i in s.get_inputs()] for g, s in self._sessions.items()}
        self._outputs = {g: [o.name for o in s.get_outputs()] for g, s in self._sessions.items()}

    def input_names(self, graph: str) -> list[str]:
        return self._inputs[graph]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._sessions[graph].run(None, feeds)
        return dict(zip(self._outputs[graph], values, strict=True))
