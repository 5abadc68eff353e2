"""Native TensorRT backend: runs a bundle's engines (built on this device) through the TensorRT
Python API with cuda-python for device memory. Same interface as the ONNX Runtime backend.

Imported only when TensorRT is requested and the engines fit this machine (see engines.py).
"""

from __future__ import annotations

import numpy as np

from .bundle import Bundle, BundleError
from .engines import ENGINE_DIR


class TensorRTBackend:
    def __init__(self, bundle: Bundle, metadata: dict):
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart

        self.trt, self.cudart = trt, cudart
        self.name = f"tensorrt-{trt.__version__}"
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engines, self.contexts = {}, {}
        for graph, entry in metadata["engines"].items():
            path = bundle.path / ENGINE_DIR / entry["file"]
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise BundleError(f"{path}: TensorRT cannot deserialize this engine")
            self.engines[graph] = engine
            self.contexts[graph] = engine.create_execution_context()
        self.stream = self._check(cudart.cudaStreamCreate())
        # Engines built before batched checks have a decoder profile of one row.
        try:
            self.max_batch = int(metadata["engines"]["decoder"]["profile"]["inputs_embeds"][2][0])
        except (KeyError, IndexError, TypeError, ValueError):
            self.max_batch = 1

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def _io(self, graph: str, mode) -> list[str]:
        engine = self.engines[graph]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [n for n in names if engine.get_tensor_mode(n) == mode]

    def input_names(self, graph: str) -> list[str]:
        return self._io(graph, self.trt.TensorIOMode.INPUT)

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, cudart = self.trt, self.cudart
        engine, ctx = self.engines[graph], self.contexts[graph]
        allocations = []

        def alloc(nbytes: int) -> int:
            ptr = self._check(cudart.cudaMalloc(max(1, nbytes)))
            allocations.append(ptr)
            return ptr

        try:
            for name in self.input_names(graph):
                array = np.ascontiguousarray(feeds[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
                ctx.set_input_shape(name, array.shape)
                ptr = alloc(array.nbytes)
                if array.nbytes:
                    self._check(
                        cudart.cudaMemcpyAsync(
                            ptr,
                            array.ctypes.data,
                            array.nbytes,
                            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                            self.stream,
                        )
                    )
                ctx.set_tensor_address(name, ptr)
            outputs = {}
            for name in self._io(graph, trt.TensorIOMode.OUTPUT):
                host = np.empty(tuple(ctx.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
                ptr = alloc(host.nbytes)
                ctx.set_tensor_address(name, ptr)
                outputs[name] = (host, ptr)
            if not ctx.execute_async_v3(self.stream):
                raise RuntimeError(f"TensorRT failed to run the {graph} engine")
            for host, ptr in outputs.values():
                if host.nbytes:
                    self._check(
                        cudart.cudaMemcpyAsync(
                            host.ctypes.data,
                            ptr,
                            host.nbytes,
                            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                            self.stream,
                        )
                    )
            self._check(cudart.cudaStreamSynchronize(self.stream))
            return {
                name: host.astype(np.float32) if host.dtype == np.float16 else host
                for name, (host, _) in outputs.items()
            }
        finally:
            for ptr in allocations:
                cudart.cudaFree(ptr)
