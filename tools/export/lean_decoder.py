"""The decoder graph written out op by op from the checkpoint's weights, instead of traced.

The traced graph (graphs.DecoderGraph through torch.onnx) carries the shape arithmetic of every
``view`` and ``expand`` in transformers' Molmo2 code: ~400 kernels per decode step, over half of
them Shape/Gather/Unsqueeze/Concat on a handful of integers. Here every reshape has a constant
target (0 = keep that dimension, -1 = infer), the grouped-query attention broadcasts a 5-D MatMul
instead of repeating K/V, q/k/v and gate/up are one MatMul each, and only standard ONNX ops are
used (ONNX Runtime fuses the RMSNorm pattern; TensorRT parses all of it). Same inputs, outputs and
arithmetic as the traced graph: the parity tests hold it to |Δlogit| ≤ 1e-4 against transformers.

Checkpoints this cannot express (a RoPE whose frequencies depend on the sequence length, an
activation other than SiLU) raise LeanUnsupported and the traced graph is used.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper


class LeanUnsupported(ValueError):
    """The checkpoint uses a feature the lean graph does not write out."""


class _Graph:
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

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: list[str] | None = None,
           n_out: int = 1, node_name: str | None = None, **attrs) -> str | list[str]:
        outs = outputs or [self.name(hint or op_type.lower()) for _ in range(n_out)]
        # names like the traced graph's (/lm_head/MatMul): quantize --keep patterns select by them
        name = node_name or f"/{outs[0]}/{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 and outputs is None else outs


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def _rms_norm(g: _Graph, x: str, weight: torch.Tensor, eps: float, hint: str) -> str:
    """x / sqrt(mean(x²) + eps) * weight — the pattern ONNX Runtime fuses into SimplifiedLayerNormalization."""
    two = g.const("two", np.array(2.0, np.float32))
    sq = g.op("Pow", [x, two], f"{hint}_sq")
    mean = g.op("ReduceMean", [sq, g.const("axes", np.array([-1], np.int64))], f"{hint}_mean", keepdims=1)
    var = g.op("Add", [mean, g.const("eps", np.array(eps, np.float32))], f"{hint}_var")
    std = g.op("Sqrt", [var], f"{hint}_std")
    normed = g.op("Div", [x, std], f"{hint}_normed")
    return g.op("Mul", [normed, g.const(f"{hint}_w", _f32(weight))], hint)


def _linear(g: _Graph, x: str, weights: list[torch.Tensor], biases: list[torch.Tensor | None], hint: str) -> str:
    """x @ [W1; W2; …]ᵀ (+ b): several projections of the same input as one MatMul."""
    w = np.concatenate([_f32(wi).T for wi in weights], axis=1)
    y = g.op("MatMul", [x, g.const(f"{hint}_w", w)], hint, node_name=f"/{hint}/MatMul")
    if any(b is not None for b in biases):
        b = np.concatenate([_f32(bi) if bi is not None else np.zeros(wi.shape[0], np.float32)
                            for wi, bi in zip(weights, biases, strict=True)])
        y = g.op("Add", [y, g.const(f"{hint}_b", b)], f"{hint}_bias")
    return y


def _shape(values: list[int]) -> np.ndarray:
    return np.array(values, np.int64)


def _rotate(g: _Graph, x: str, cos: str, sin: str, hint: str) -> str:
    """x·cos + rotate_half(x)·sin, rotate_half(x) = [-x₂, x₁] over the halves of the last axis."""
    x1, x2 = g.op("Split", [x], hint=f"{hint}_half", n_out=2, axis=-1, num_outputs=2)
    rotated = g.op("Concat", [g.op("Neg", [x2], f"{hint}_neg"), x1], f"{hint}_rot", axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos], f"{hint}_cos"), g.op("Mul", [rotated, sin], f"{hint}_sin")], hint)


def _rope_tables(g: _Graph, positions: str, rotary: torch.nn.Module, hint: str) -> tuple[str, str]:
    """cos and sin [B, 1, S, head_dim] for the position ids, as transformers' rotary embedding computes them."""
    if getattr(rotary, "rope_type", "default") in ("dynamic", "longrope"):
        raise LeanUnsupported(f"RoPE type {rotary.rope_type!r} changes its frequencies with the sequence length")
    inv_freq = _f32(rotary.inv_freq)
    freqs = g.op("Mul", [positions, g.const(f"{hint}_inv_freq", inv_freq)], f"{hint}_freqs")  # [B, S, D/2]
    emb = g.op("Concat", [freqs, freqs], f"{hint}_emb", axis=-1)
    cos, sin = g.op("Cos", [emb], f"{hint}_cos"), g.op("Sin", [emb], f"{hint}_sin")
    scale = float(rotary.attention_scaling)
    if scale != 1.0:
        s = g.const(f"{hint}_scale", np.array(scale, np.float32))
        cos, sin = g.op("Mul", [cos, s], f"{hint}_cos_s"), g.op("Mul", [sin, s], f"{hint}_sin_s")
    one = g.const("axis1", np.array([1], np.int64))
    return g.op("Unsqueeze", [cos, one], f"{hint}_cos4"), g.op("Unsqueeze", [sin, one], f"{hint}_sin4")


def build_lean_decoder(model: torch.nn.Module, opset: int) -> onnx.ModelProto:
    """The decoder graph of a Molmo2ForConditionalGeneration, with the I/O of graphs.DecoderGraph."""
    lm, text = model.model.language_model, model.config.text_config
    if text.hidden_act != "silu":
        raise LeanUnsupported(f"hidden_act {text.hidden_act!r} (the lean graph writes SiLU)")
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    group, hidden, n_layers = heads // kv_heads, text.hidden_size, text.num_hidden_layers
    eps = float(text.rms_norm_eps)
    g = _Graph()
    embeds, mask, position_ids = "inputs_embeds", "attention_mask", "position_ids"
    positions = g.op("Unsqueeze", [g.op("Cast", [position_ids], "positions_f", to=TensorProto.FLOAT),
                                   g.const("axis2", np.array([2], np.int64))], "positions")
    ropes = {"scaled": _rope_tables(g, positions, lm.rotary_emb, "rope_scaled")}
    if any(t == "unscaled" for t in lm.rope_types):
        ropes["unscaled"] = _rope_tables(g, positions, lm.rotary_emb_unscaled, "rope_unscaled")
    mask5 = g.op("Unsqueeze", [mask, g.const("axis1", np.array([1], np.int64))], "mask5")  # [B, 1, 1, S, T]
    scaling = g.const("scaling", np.array(head_dim**-0.5, np.float32))
    h = embeds
    outputs = []
    for i, layer in enumerate(lm.layers):
        attn, mlp, p = layer.self_attn, layer.mlp, f"layers.{i}"
        residual = h
        x = h if layer.norm_after else _rms_norm(g, h, layer.input_layernorm.weight, eps, f"{p}_in_norm")
        qkv = _linear(g, x, [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight],
                      [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias], f"{p}_qkv")
        sizes = g.const("qkv_sizes", _shape([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]))
        q, k, v = g.op("Split", [qkv, sizes], hint=f"{p}_split", n_out=3, axis=-1)
        if attn.qk_norm_type == "olmo":
            q = _rms_norm(g, q, attn.q_norm.weight, attn.q_norm.variance_epsilon, f"{p}_q_norm")
            k = _rms_norm(g, k, attn.k_norm.weight, attn.k_norm.variance_epsilon, f"{p}_k_norm")
        q = g.op("Reshape", [q, g.const("q_shape", _shape([0, 0, heads, head_dim]))], f"{p}_q4")
        k = g.op("Reshape", [k, g.const("kv_shape", _shape([0, 0, kv_heads, head_dim]))], f"{p}_k4")
        v = g.op("Reshape", [v, g.const("kv_shape", _shape([0, 0, kv_heads, head_dim]))], f"{p}_v4")
        if attn.qk_norm_type == "qwen3":
            q = _rms_norm(g, q, attn.q_norm.weight, attn.q_norm.variance_epsilon, f"{p}_q_norm")
            k = _rms_norm(g, k, attn.k_norm.weight, attn.k_norm.variance_epsilon, f"{p}_k_norm")
        q = g.op("Transpose", [q], f"{p}_qt", perm=[0, 2, 1, 3])  # [B, H, S, D]
        k = g.op("Transpose", [k], f"{p}_kt", perm=[0, 2, 1, 3])
        v = g.op("Transpose", [v], f"{p}_vt", perm=[0, 2, 1, 3])
        cos, sin = ropes[lm.rope_types[i]]
        q, k = _rotate(g, q, cos, sin, f"{p}_q_rope"), _rotate(g, k, cos, sin, f"{p}_k_rope")
        key = g.op("Concat", [f"past_key_{i}", k], outputs=[f"present_key_{i}"], axis=2)[0]
        value = g.op("Concat", [f"past_value_{i}", v], outputs=[f"present_value_{i}"], axis=2)[0]
        outputs += [key, value]
        # grouped-query attention: query heads kv·G … kv·G+G-1 share K/V head kv (transformers' repeat_kv)
        q5 = g.op("Reshape", [q, g.const("q5_shape", _shape([0, kv_heads, group, -1, head_dim]))], f"{p}_q5")
        axis2 = g.const("axis2", np.array([2], np.int64))
        k5 = g.op("Transpose", [g.op("Unsqueeze", [key, axis2], f"{p}_k5")], f"{p}_k5t", perm=[0, 1, 2, 4, 3])
        scores = g.op("Mul", [g.op("MatMul", [q5, k5], f"{p}_qk"), scaling], f"{p}_scores")
        probs = g.op("Softmax", [g.op("Add", [scores, mask5], f"{p}_masked")], f"{p}_probs", axis=-1)
        ctx5 = g.op("MatMul", [probs, g.op("Unsqueeze", [value, axis2], f"{p}_v5")], f"{p}_ctx5")
        ctx = g.op("Reshape", [ctx5, g.const("ctx_shape", _shape([0, heads, -1, head_dim]))], f"{p}_ctx")
        ctx = g.op("Transpose", [ctx], f"{p}_ctx_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, g.const("merge_shape", _shape([0, 0, heads * head_dim]))], f"{p}_ctx_m")
        out = _linear(g, ctx, [attn.o_proj.weight], [attn.o_proj.bias], f"{p}_o")
        if layer.norm_after:
            out = _rms_norm(g, out, layer.input_layernorm.weight, eps, f"{p}_in_norm")
        h = g.op("Add", [residual, out], f"{p}_attn_res")
        residual = h
        x = h if layer.norm_after else _rms_norm(g, h, layer.post_attention_layernorm.weight, eps, f"{p}_post_norm")
        gate_up = _linear(g, x, [mlp.gate_proj.weight, mlp.up_proj.weight], [None, None], f"{p}_gate_up")
        gate, up = g.op("Split", [gate_up], hint=f"{p}_gu", n_out=2, axis=-1, num_outputs=2)
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}_sig")], f"{p}_silu")
        out = _linear(g, g.op("Mul", [act, up], f"{p}_act"), [mlp.down_proj.weight], [None], f"{p}_down")
        if layer.norm_after:
            out = _rms_norm(g, out, layer.post_attention_layernorm.weight, eps, f"{p}_post_norm")
        h = g.op("Add", [residual, out], f"{p}_mlp_res")
    last = g.op("Slice", [h, g.const("last_start", _shape([-1])), g.const("last_end", _shape([2**62])),
                          g.const("axis1", _shape([1]))], "last")
    last = _rms_norm(g, last, lm.norm.weight, eps, "final_norm")
    logits = _linear(g, last, [model.lm_head.weight], [getattr(model.lm_head, "bias", None)], "lm_head")
    g.op("Squeeze", [logits, g.const("axis1", _shape([1]))], outputs=["logits"])

    def tensor(name: str, dims: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    inputs = [tensor(embeds, ["batch", "seq", hidden]), tensor(mask, ["batch", 1, "seq", "total"]),
              helper.make_tensor_value_info(position_ids, TensorProto.INT64, ["batch", "seq"])]
    graph_outputs = [tensor("logits", ["batch", model.lm_head.weight.shape[0]])]
    for i in range(n_layers):
        for kind in ("key", "value"):
            inputs.append(tensor(f"past_{kind}_{i}", ["batch", kv_heads, "past", head_dim]))
            graph_outputs.append(tensor(f"present_{kind}_{i}", ["batch", kv_heads, "total", head_dim]))
    graph = helper.make_graph(g.nodes, "decoder", inputs, graph_outputs, g.inits)
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                    producer_name="edge-inspect lean decoder")
    model_proto.ir_version = 8
    onnx.checker.check_model(model_proto)
    return model_proto
