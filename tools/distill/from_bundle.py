"""A student's weights read back from its exported bundle, so that training can go on from a shipped
model whose run folder (torch checkpoint) is gone.

The export reshapes weights (a Linear's weight transposed for MatMul, q/k/v concatenated, the vision
graph's constants folded by the tracer), so there is no name-for-name map. Instead the map is found
by exporting a *probe*: the same student with every parameter filled with distinct random values.
Each parameter is then located in the probe's graphs by value (as is, transposed, or as a block of a
concatenation), and the same places are read from the real bundle. ``load_from_bundle`` checks the
result by exporting the loaded model again and comparing every graph's weights with the bundle's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

GRAPH_FILES = ("vision.onnx", "embed.onnx", "decoder.onnx")


class BundleWeightsError(ValueError):
    """The bundle does not hold the weights of this student shape."""


@dataclass(frozen=True)
class Place:
    graph: str  # file name in the bundle
    initializer: str
    transposed: bool  # the parameter (2-D view) is stored transposed
    rows: slice  # block of the (possibly transposed) parameter inside the initializer
    cols: slice


def _initializers(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in GRAPH_FILES:
        path = folder / name
        if not path.is_file():
            raise BundleWeightsError(f"{path}: missing (a student bundle has {', '.join(GRAPH_FILES)})")
        model = onnx.load(str(path), load_external_data=True)
        keys = _stable_keys(model.graph)
        out[name] = {keys.get(t.name, t.name): numpy_helper.to_array(t) for t in model.graph.initializer}
    return out


def _stable_keys(graph: onnx.GraphProto) -> dict[str, str]:
    """The tracer numbers unnamed constants (``onnx::MatMul_577``) by a counter that differs between
    exports; such a constant is named by its first consumer instead (the node's name, which the
    tracer takes from the module path, e.g. ``/layers.0/self_attn/o_proj/MatMul``, and the input slot)."""
    keys: dict[str, str] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name.startswith("onnx::") and name not in keys:
                keys[name] = f"{node.name or node.op_type}:input{slot}"
    return keys


def _as_2d(value: np.ndarray) -> np.ndarray:
    return value.reshape(1, -1) if value.ndim == 1 else value.reshape(value.shape[0], -1)


def _stored_2d(value: np.ndarray) -> np.ndarray:
    """A stored initializer as rows: a vector is one row, [1, n, d] (a folded positional table) is [n, d]."""
    return value.reshape(1, -1) if value.ndim == 1 else value.reshape(-1, value.shape[-1])


def _find_block(form: np.ndarray, stored: np.ndarray) -> tuple[slice, slice] | None:
    """Where ``form`` (2-D) sits inside ``stored`` (2-D), or None."""
    if form.shape[0] > stored.shape[0] or form.shape[1] > stored.shape[1]:
        return None
    for r, c in zip(*np.nonzero(stored == form[0, 0]), strict=True):
        rows, cols = slice(int(r), int(r) + form.shape[0]), slice(int(c), int(c) + form.shape[1])
        block = stored[rows, cols]
        if block.shape == form.shape and np.array_equal(block, form):
            return rows, cols
    return None


def _locate(name: str, value: np.ndarray, graphs: dict[str, dict[str, np.ndarray]]) -> Place:
    forms = [(False, _as_2d(value)), (True, _as_2d(value).T)]
    for graph, inits in graphs.items():
        for init_name, stored in inits.items():
            if stored.dtype != np.float32 or stored.size < value.size:
                continue
            for transposed, form in forms:
                block = _find_block(form, _stored_2d(stored))
                if block is not None:
                    return Place(graph, init_name, transposed, *block)
    raise BundleWeightsError(f"parameter {name} {tuple(value.shape)} not found in the probe export")


def _probe_places(model: torch.nn.Module, export_graphs) -> dict[str, Place]:
    """Export a copy of ``model`` with distinct random parameters and locate each parameter."""
    probe = {n: p.detach().clone() for n, p in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1234)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.rand(p.shape, generator=generator) * 2 - 1)
        values = {n: p.detach().numpy().copy() for n, p in params.items()}
        with tempfile.TemporaryDirectory() as tmp:
            export_graphs(model, Path(tmp))
            graphs = _initializers(Path(tmp))
        model.load_state_dict(probe)
    return {name: _locate(name, value, graphs) for name, value in values.items()}


def load_from_bundle(model: torch.nn.Module, bundle: str | Path) -> float:
    """Fill ``model``'s parameters from ``bundle`` (exported from a model of the same shape) and return
    the largest difference between the bundle's weights and a re-export of the loaded model (0.0 when
    the round trip is exact). Raises BundleWeightsError when the shapes do not match."""
    from tools.export.onnx_bundle import export_graphs

    bundle = Path(bundle)
    real = _initializers(bundle)
    places = _probe_places(model, export_graphs)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, place in places.items():
            stored = real[place.graph].get(place.initializer)
            if stored is None:
                raise BundleWeightsError(
                    f"{bundle / place.graph}: no initializer {place.initializer} "
                    f"(for {name}): the bundle is not of this student shape"
                )
            block = _stored_2d(stored)[place.rows, place.cols]
            p = params[name]
            expected = _as_2d(p.detach().numpy())
            if place.transposed:
                block = block.T
            if block.shape != expected.shape:
                raise BundleWeightsError(
                    f"{bundle / place.graph}: {place.initializer} has shape {stored.shape}, "
                    f"not what {name} {tuple(p.shape)} needs"
                )
            p.copy_(torch.from_numpy(np.array(block, dtype=np.float32)).reshape(p.shape))
    with tempfile.TemporaryDirectory() as tmp:
        export_graphs(model, Path(tmp))
        again = _initializers(Path(tmp))
    worst = 0.0
    for graph, inits in real.items():
        for init_name, stored in inits.items():
            other = again[graph].get(init_name)
            if other is None or other.shape != stored.shape:
                raise BundleWeightsError(f"{bundle / graph}: {init_name} does not come back on re-export")
            if stored.dtype.kind == "f":
                worst = max(worst, float(np.max(np.abs(stored.astype(np.float64) - other), initial=0.0)))
            elif not np.array_equal(stored, other):
                raise BundleWeightsError(f"{bundle / graph}: {init_name} differs on re-export")
    return worst
