"""Inference backends: run a bundle's graphs by name. ONNX Runtime is the one backend today.

Every backend offers ``run(graph, feeds) -> dict[str, np.ndarray]`` and ``input_names(graph)``;
the generation code knows nothing else about it. ``run_into(graph, feeds, outputs)`` writes the
outputs into arrays the caller owns (ONNX Runtime I/O binding: no allocation, no copy out); a
backend without it gets the generic fallback ``run_into`` below.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserError
from .bundle import GRAPHS, Bundle, BundleError
from .manifest import OPTIONAL_GRAPHS


class ProviderError(UserError, ValueError):
    """An execution provider that is unknown or not in this onnxruntime build (one line for the user)."""


log = logging.getLogger(__name__)

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


class BindingBackend(Backend, Protocol):
    """A backend that binds arrays to a graph once and runs it on them in place (the decode-step graph)."""

    def has_graph(self, graph: str) -> bool: ...

    def bind(
        self, graph: str, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
    ) -> Callable[[], object]: ...


def run_into(backend, graph: str, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """Run ``graph`` writing its named outputs into the given (preallocated, C-contiguous) arrays."""
    native = getattr(backend, "run_into", None)
    if native is not None:
        native(graph, feeds, outputs)
        return
    out = backend.run(graph, feeds)
    for name, target in outputs.items():
        target[...] = out[name]


def session_options(ort, threads: int = 0, spin: bool | None = None):
    """Options for small-batch latency on a few shared cores.

    ``threads`` 0: one intra-op thread per core ``os.sched_getaffinity`` allows. ``spin``: while a Run
    lasts, idle worker threads busy-wait for the next kernel instead of sleeping and being woken for
    it; they stop when the Run returns (``session.force_spinning_stop``), so an idle appliance burns
    no CPU between frames. ``spin=False``: workers sleep between kernels. None: SPIN_DURING_RUN (off)."""
    if spin is None:
        spin = SPIN_DURING_RUN
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    options.intra_op_num_threads = threads or cores
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


# Spinning is off by default: it pays only where the session's threads have the cores to themselves.
# Measured on 2-core AMD EPYC (AVX2), demo student, the same captured inputs, sessions in turn:
#   cores otherwise idle:          vision 22.8 -> 18.7 ms, image prefill 17.8 -> 14.0 ms with spinning;
#   one other busy process (CPU):  vision 26.6 -> 48.1 ms, image prefill 15.8 -> 31.3 ms with spinning
#     (a spinning worker holds a core while the thread it waits for is preempted; a bounded spin,
#     session.intra_op.spin_duration_us 20-500 us, was slower than no spinning under load too).
# An appliance shares its cores with the PLC link, the web page and often a kiosk browser, so a
# station turns it on only on purpose (``model.spin`` in station.yaml).
SPIN_DURING_RUN = False


# The decode-step graph runs one token per row through ~75 kernels of a few microseconds each: handing
# each of them to a second thread and waiting for it costs more than the second core saves. Measured on
# the demo student (2-core AMD EPYC, AVX2): one row's step 0.52 ms with one thread against 0.65 ms with
# two (fp32), 0.32 against 0.42 ms (int8 block-wise); the decode stage of a part 35 against 45 ms. The
# other core stays free for the PLC link and the web page while a part decodes.
DECODE_STEP_THREADS = 1


def choose_providers(requested: str | Sequence[str], available: list[str]) -> list[str]:
    """Resolve 'auto' or a list of names to the ONNX Runtime providers to use, best first."""
    names = ["tensorrt", "cuda", "cpu"] if requested == "auto" else requested
    if isinstance(names, str):
        names = [names]
    chosen = []
    for name in names:
        if name not in PROVIDERS:
            raise ProviderError(f"unknown provider {name!r}; choose from {', '.join(PROVIDERS)} or 'auto'")
        provider = PROVIDERS[name]
        if provider in available:
            chosen.append(provider)
        elif requested != "auto":
            raise ProviderError(
                f"provider {name!r} is not available in this onnxruntime build ({', '.join(available)})"
            )
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def engine_cache_root() -> Path:
    """Where the TensorRT provider keeps its engines: systemd's CacheDirectory= when the unit sets one
    ($CACHE_DIRECTORY), else $XDG_CACHE_HOME or ~/.cache, under edge-inspect/engines."""
    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(str(base).split(":")[0]) / "edge-inspect" / "engines"


def provider_options(
    providers: list[str], bundle_sha256: str, cache_root: Path | None = None, env=None, build: bool = False
) -> tuple[list, str | None]:
    """``providers`` with the TensorRT provider's engine cache switched on, in a folder keyed by the
    bundle, TensorRT version, GPU and L4T release (engines.Environment.cache_key): an engine cache
    from another JetPack or bundle is never loaded. With no engines in that folder yet, the TensorRT
    provider is left out (the station starts on the next provider at once, instead of building for
    minutes) and the second value says why and how to build them; ``build`` builds them now."""
    if "TensorrtExecutionProvider" not in providers:
        return list(providers), None
    from .engines import detect_environment

    env = detect_environment() if env is None else env
    folder = (cache_root or engine_cache_root()) / env.cache_key(bundle_sha256)
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        if not build:
            rest = [p for p in providers if p != "TensorrtExecutionProvider"]
            return rest, (
                f"no TensorRT engines for this bundle, TensorRT {env.tensorrt}, GPU and L4T {env.l4t or '-'} in {folder}: "
                f"build them with `edge-inspect doctor STATION.yaml --build-engines` (minutes); running on "
                f"{rest[0].removesuffix('ExecutionProvider')} meanwhile"
            )
        log.warning("TensorRT provider: building engines into %s (this takes minutes)", folder)
    else:
        log.info("TensorRT provider: engines from %s", folder)
    trt = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(folder),
           "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(folder)}  # fmt: skip
    return [("TensorrtExecutionProvider", trt) if p == "TensorrtExecutionProvider" else p for p in providers], None


def _first_words(message: str, limit: int = 160) -> str:
    line = message.splitlines()[0] if message else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _bound(binding, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
    """``binding`` with every array bound in place (host memory, the arrays' own addresses)."""
    for name, array in feeds.items():
        binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
    for name, array in outputs.items():
        binding.bind_output(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
    return binding


class OnnxRuntimeBackend:
    """One ONNX Runtime session per graph of the bundle. ``threads``: intra-op threads of the vision,
    embed and decoder graphs (0: one per allowed core); ``step_threads``: of the decode-step graph;
    ``spin``: worker threads busy-wait between kernels while a Run lasts (``session_options``; None:
    SPIN_DURING_RUN)."""

    def __init__(
        self,
        bundle: Bundle,
        providers: str | Sequence[str] = "cpu",
        threads: int = 0,
        step_threads: int = DECODE_STEP_THREADS,
        spin: bool | None = None,
        build_engines: bool = False,
    ):
        import onnxruntime as ort

        self.providers = choose_providers(providers, ort.get_available_providers())
        self.spin = SPIN_DURING_RUN if spin is None else spin
        options = session_options(ort, threads, self.spin)
        with_options, self.engines_missing = provider_options(self.providers, bundle.sha256, build=build_engines)
        if self.engines_missing:
            log.warning("%s", self.engines_missing)
        self._sessions = {}
        for graph in GRAPHS:
            path: Path = bundle.graph_path(graph)
            try:
                self._sessions[graph] = ort.InferenceSession(str(path), options, providers=with_options)
            except Exception as err:  # onnxruntime raises its own exception types
                raise BundleError(f"{path}: onnxruntime cannot load it: {str(err).splitlines()[0]}") from None
        step_options = session_options(ort, step_threads, self.spin)  # 0: like the other graphs
        self.unused_graphs: dict[str, str] = {}  # optional graph → why it is not used (doctor, /api/status)
        for graph in OPTIONAL_GRAPHS:
            if graph in bundle.info.graphs and self.providers == ["CPUExecutionProvider"]:
                path = bundle.graph_path(graph)
                try:
                    self._sessions[graph] = ort.InferenceSession(str(path), step_options, providers=self.providers)
                except Exception as err:  # an older onnxruntime without the contrib ops: decode without it
                    # Expected on Python 3.10, whose newest onnxruntime (1.23) predates the attention op's
                    # inputs this graph uses: a fact of the platform (`edge-inspect doctor`), not a fault.
                    self.unused_graphs[graph] = (
                        f"onnxruntime {ort.__version__} cannot load {path.name} "
                        f"({_first_words(str(err))}); decoding with the decoder graph (slower)"
                    )
                    log.info("%s: not used: %s", path, self.unused_graphs[graph])
        # What the sessions really run on: onnxruntime drops a provider whose libraries fail to load.
        self.providers_in_use = [p for p in self._sessions["vision"].get_providers() if p in self.providers]
        self.name = (
            f"onnxruntime[{','.join(p.removesuffix('ExecutionProvider').lower() for p in self.providers_in_use)}]"
        )
        self._inputs = {g: [i.name for i in s.get_inputs()] for g, s in self._sessions.items()}
        self._shapes = {g: {i.name: list(i.shape) for i in s.get_inputs()} for g, s in self._sessions.items()}
        self._outputs = {g: [o.name for o in s.get_outputs()] for g, s in self._sessions.items()}
        self._local = threading.local()  # run_into's I/O bindings, one set per thread

    def input_names(self, graph: str) -> list[str]:
        return self._inputs[graph]

    def input_shape(self, graph: str, name: str) -> list:
        """The declared shape of input ``name`` of ``graph`` (named dimensions as strings)."""
        return self._shapes[graph][name]

    def has_graph(self, graph: str) -> bool:
        return graph in self._sessions

    def bind(self, graph: str, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Callable[[], object]:
        """A callable that runs ``graph`` on these arrays, bound once (I/O binding on host memory):
        the caller changes their contents in place between calls, never their shape or address."""
        binding = _bound(self._sessions[graph].io_binding(), feeds, outputs)
        session = self._sessions[graph]
        return lambda: session.run_with_iobinding(binding)

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._sessions[graph].run(None, feeds)
        return dict(zip(self._outputs[graph], values, strict=True))

    def run_into(self, graph: str, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """I/O binding on host memory: ONNX Runtime reads the inputs in place and writes each output
        straight into the caller's array (which must be C-contiguous with the output's shape). Each
        thread binds its own: a binding shared by two threads would mix their arrays."""
        bindings = getattr(self._local, "bindings", None)
        if bindings is None:
            bindings = self._local.bindings = {}
        binding = bindings.get(graph)
        if binding is None:
            binding = bindings[graph] = self._sessions[graph].io_binding()
        self._sessions[graph].run_with_iobinding(_bound(binding, feeds, outputs))
