"""Writing ONNX graphs op by op: the builder and helpers that the lean decoder graph (lean_decoder.py)
and the decode-step graph (step_decoder.py) share."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper


class GraphBuilder:
    """Nodes and initializers of a graph being written, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], hint: str | None = None, node_name: str | None = None, **attrs
    ) -> str:
        """A node with one output, named after ``hint``; returns that name."""
        return self.op_outputs(op_type, inputs, hint, node_name=node_name, **attrs)[0]

    def op_outputs(
        self,
        op_type: str,
        inputs: list[str],
        hint: str | None = None,
        outputs: list[str] | None = None,
        n_out: int = 1,
        node_name: str | None = None,
        **attrs,
    ) -> list[str]:
        """A node with the given ``outputs`` (graph outputs by name), else ``n_out`` outputs named after
        ``hint``; returns their names."""
        outs = outputs or [self.name(hint or op_type.lower()) for _ in range(n_out)]
        # names like the traced graph's (/lm_head/MatMul): quantize --keep patterns select by them
        name = node_name or f"/{outs[0]}/{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs


def f32(t: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t.astype(np.float32, copy=False)
    return t.detach().to(torch.float32).cpu().numpy()


def int64s(values: list[int]) -> np.ndarray:
    """A shape (or axes) constant."""
    return np.array(values, np.int64)


def linear(g: GraphBuilder, x: str, weights: list, biases: list, hint: str) -> str:
    """x @ [W1; W2; …]ᵀ (+ b): several projections of the same input as one MatMul (torch or numpy weights)."""
    w = np.concatenate([f32(wi).T for wi in weights], axis=1)
    y = g.op("MatMul", [x, g.const(f"{hint}_w", w)], hint, node_name=f"/{hint}/MatMul")
    if any(b is not None for b in biases):
        b = np.concatenate(
            [
                f32(bi) if bi is not None else np.zeros(wi.shape[0], np.float32)
                for wi, bi in zip(weights, biases, strict=True)
            ]
        )
        y = g.op("Add", [y, g.const(f"{hint}_b", b)], f"{hint}_bias")
    return y
