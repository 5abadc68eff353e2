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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_graph import GraphBuilder, f32, int64s, linear

if TYPE_CHECKING:
    from transformers import Molmo2ForConditionalGeneration


class LeanUnsupported(ValueError):
    """The checkpoint uses a feature the lean graph does not write out."""


Array = np.ndarray


@dataclass
class LayerSpec:
    q: Array  # weights as nn.Linear keeps them: [out, in]
    k: Array
    v: Array
    o: Array
    gate: Array
    up: Array
    down: Array
    input_norm: Array
    post_norm: Array
    q_norm: Array
    k_norm: Array
    rope: str = "scaled"
    q_bias: Array | None = None
    k_bias: Array | None = None
    v_bias: Array | None = None
    o_bias: Array | None = None


@dataclass
class DecoderSpec:
    """What the lean graph needs: sizes, flags, RoPE frequencies and the weights."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    qk_norm_type: str  # qwen3: q/k norm per head; olmo: over the whole projection
    qk_eps: float
    norm_after: bool
    rope: dict[str, tuple[Array, float]]  # rope type -> (inv_freq, attention scaling)
    final_norm: Array
    lm_head: Array
    lm_head_bias: Array | None = None
    layers: list[LayerSpec] = field(default_factory=list)


def spec_from_model(model: Molmo2ForConditionalGeneration) -> DecoderSpec:
    """The spec of a transformers Molmo2ForConditionalGeneration."""
    lm, text = model.model.language_model, model.config.text_config
    if text.hidden_act != "silu":
        raise LeanUnsupported(f"hidden_act {text.hidden_act!r} (the lean graph writes SiLU)")
    rope = {}
    for name, rotary in (("scaled", lm.rotary_emb), ("unscaled", lm.rotary_emb_unscaled)):
        if name in lm.rope_types:
            if getattr(rotary, "rope_type", "default") in ("dynamic", "longrope"):
                raise LeanUnsupported(
                    f"RoPE type {rotary.rope_type!r} changes its frequencies with the sequence length"
                )
            rope[name] = (f32(rotary.inv_freq), float(rotary.attention_scaling))

    def bias(linear):
        return f32(linear.bias) if linear.bias is not None else None

    layers = []
    for i, layer in enumerate(lm.layers):
        a, m = layer.self_attn, layer.mlp
        layers.append(LayerSpec(
            q=f32(a.q_proj.weight), k=f32(a.k_proj.weight), v=f32(a.v_proj.weight), o=f32(a.o_proj.weight),
            gate=f32(m.gate_proj.weight), up=f32(m.up_proj.weight), down=f32(m.down_proj.weight),
            input_norm=f32(layer.input_layernorm.weight), post_norm=f32(layer.post_attention_layernorm.weight),
            q_norm=f32(a.q_norm.weight), k_norm=f32(a.k_norm.weight), rope=lm.rope_types[i],
            q_bias=bias(a.q_proj), k_bias=bias(a.k_proj), v_bias=bias(a.v_proj), o_bias=bias(a.o_proj)))  # fmt: skip
    first = lm.layers[0].self_attn
    return DecoderSpec(
        hidden=text.hidden_size, heads=text.num_attention_heads, kv_heads=text.num_key_value_heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
        eps=float(text.rms_norm_eps), qk_norm_type=first.qk_norm_type, qk_eps=float(first.q_norm.variance_epsilon),
        norm_after=bool(text.norm_after), rope=rope, final_norm=f32(lm.norm.weight), lm_head=f32(model.lm_head.weight),
        lm_head_bias=f32(model.lm_head.bias) if getattr(model.lm_head, "bias", None) is not None else None,
        layers=layers)  # fmt: skip


def _rms_norm(g: GraphBuilder, x: str, weight: Array, eps: float, hint: str) -> str:
    """x / sqrt(mean(x²) + eps) * weight — the pattern ONNX Runtime fuses into SimplifiedLayerNormalization."""
    two = g.const("two", np.array(2.0, np.float32))
    sq = g.op("Pow", [x, two], f"{hint}_sq")
    mean = g.op("ReduceMean", [sq, g.const("axes", np.array([-1], np.int64))], f"{hint}_mean", keepdims=1)
    var = g.op("Add", [mean, g.const("eps", np.array(eps, np.float32))], f"{hint}_var")
    std = g.op("Sqrt", [var], f"{hint}_std")
    normed = g.op("Div", [x, std], f"{hint}_normed")
    return g.op("Mul", [normed, g.const(f"{hint}_w", f32(weight))], hint)


def _rotate(g: GraphBuilder, x: str, cos: str, sin: str, hint: str) -> str:
    """x·cos + rotate_half(x)·sin, rotate_half(x) = [-x₂, x₁] over the halves of the last axis."""
    x1, x2 = g.op_outputs("Split", [x], hint=f"{hint}_half", n_out=2, axis=-1, num_outputs=2)
    rotated = g.op("Concat", [g.op("Neg", [x2], f"{hint}_neg"), x1], f"{hint}_rot", axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos], f"{hint}_cos"), g.op("Mul", [rotated, sin], f"{hint}_sin")], hint)


def _rope_tables(g: GraphBuilder, positions: str, inv_freq: Array, scale: float, hint: str) -> tuple[str, str]:
    """cos and sin [B, 1, S, head_dim] for the position ids, as transformers' rotary embedding computes them."""
    freqs = g.op("Mul", [positions, g.const(f"{hint}_inv_freq", f32(inv_freq))], f"{hint}_freqs")  # [B, S, D/2]
    emb = g.op("Concat", [freqs, freqs], f"{hint}_emb", axis=-1)
    cos, sin = g.op("Cos", [emb], f"{hint}_cos"), g.op("Sin", [emb], f"{hint}_sin")
    if scale != 1.0:
        s = g.const(f"{hint}_scale", np.array(scale, np.float32))
        cos, sin = g.op("Mul", [cos, s], f"{hint}_cos_s"), g.op("Mul", [sin, s], f"{hint}_sin_s")
    one = g.const("axis1", np.array([1], np.int64))
    return g.op("Unsqueeze", [cos, one], f"{hint}_cos4"), g.op("Unsqueeze", [sin, one], f"{hint}_sin4")


def graph_from_spec(spec: DecoderSpec, opset: int) -> onnx.ModelProto:
    heads, kv_heads, head_dim = spec.heads, spec.kv_heads, spec.head_dim
    group, eps = heads // kv_heads, spec.eps
    g = GraphBuilder()
    embeds, mask, position_ids = "inputs_embeds", "attention_mask", "position_ids"
    positions = g.op(
        "Unsqueeze",
        [g.op("Cast", [position_ids], "positions_f", to=TensorProto.FLOAT), g.const("axis2", np.array([2], np.int64))],
        "positions",
    )
    ropes = {
        name: _rope_tables(g, positions, inv_freq, scale, f"rope_{name}")
        for name, (inv_freq, scale) in spec.rope.items()
    }
    mask5 = g.op("Unsqueeze", [mask, g.const("axis1", np.array([1], np.int64))], "mask5")  # [B, 1, 1, S, T]
    scaling = g.const("scaling", np.array(head_dim**-0.5, np.float32))
    h = embeds
    for i, layer in enumerate(spec.layers):
        p = f"layers.{i}"
        residual = h
        x = h if spec.norm_after else _rms_norm(g, h, layer.input_norm, eps, f"{p}_in_norm")
        qkv = linear(g, x, [layer.q, layer.k, layer.v], [layer.q_bias, layer.k_bias, layer.v_bias], f"{p}_qkv")
        sizes = g.const("qkv_sizes", int64s([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]))
        q, k, v = g.op_outputs("Split", [qkv, sizes], hint=f"{p}_split", n_out=3, axis=-1)
        if spec.qk_norm_type == "olmo":
            q = _rms_norm(g, q, layer.q_norm, spec.qk_eps, f"{p}_q_norm")
            k = _rms_norm(g, k, layer.k_norm, spec.qk_eps, f"{p}_k_norm")
        q = g.op("Reshape", [q, g.const("q_shape", int64s([0, 0, heads, head_dim]))], f"{p}_q4")
        k = g.op("Reshape", [k, g.const("kv_shape", int64s([0, 0, kv_heads, head_dim]))], f"{p}_k4")
        v = g.op("Reshape", [v, g.const("kv_shape", int64s([0, 0, kv_heads, head_dim]))], f"{p}_v4")
        if spec.qk_norm_type == "qwen3":
            q = _rms_norm(g, q, layer.q_norm, spec.qk_eps, f"{p}_q_norm")
            k = _rms_norm(g, k, layer.k_norm, spec.qk_eps, f"{p}_k_norm")
        q = g.op("Transpose", [q], f"{p}_qt", perm=[0, 2, 1, 3])  # [B, H, S, D]
        k = g.op("Transpose", [k], f"{p}_kt", perm=[0, 2, 1, 3])
        v = g.op("Transpose", [v], f"{p}_vt", perm=[0, 2, 1, 3])
        cos, sin = ropes[layer.rope]
        q, k = _rotate(g, q, cos, sin, f"{p}_q_rope"), _rotate(g, k, cos, sin, f"{p}_k_rope")
        key = g.op_outputs("Concat", [f"past_key_{i}", k], outputs=[f"present_key_{i}"], axis=2)[0]
        value = g.op_outputs("Concat", [f"past_value_{i}", v], outputs=[f"present_value_{i}"], axis=2)[0]
        # grouped-query attention: query heads kv·G … kv·G+G-1 share K/V head kv (transformers' repeat_kv)
        q5 = g.op("Reshape", [q, g.const("q5_shape", int64s([0, kv_heads, group, -1, head_dim]))], f"{p}_q5")
        axis2 = g.const("axis2", np.array([2], np.int64))
        k5 = g.op("Transpose", [g.op("Unsqueeze", [key, axis2], f"{p}_k5")], f"{p}_k5t", perm=[0, 1, 2, 4, 3])
        scores = g.op("Mul", [g.op("MatMul", [q5, k5], f"{p}_qk"), scaling], f"{p}_scores")
        probs = g.op("Softmax", [g.op("Add", [scores, mask5], f"{p}_masked")], f"{p}_probs", axis=-1)
        ctx5 = g.op("MatMul", [probs, g.op("Unsqueeze", [value, axis2], f"{p}_v5")], f"{p}_ctx5")
        ctx = g.op("Reshape", [ctx5, g.const("ctx_shape", int64s([0, heads, -1, head_dim]))], f"{p}_ctx")
        ctx = g.op("Transpose", [ctx], f"{p}_ctx_t", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, g.const("merge_shape", int64s([0, 0, heads * head_dim]))], f"{p}_ctx_m")
        out = linear(g, ctx, [layer.o], [layer.o_bias], f"{p}_o")
        if spec.norm_after:
            out = _rms_norm(g, out, layer.input_norm, eps, f"{p}_in_norm")
        h = g.op("Add", [residual, out], f"{p}_attn_res")
        residual = h
        x = h if spec.norm_after else _rms_norm(g, h, layer.post_norm, eps, f"{p}_post_norm")
        gate_up = linear(g, x, [layer.gate, layer.up], [None, None], f"{p}_gate_up")
        gate, up = g.op_outputs("Split", [gate_up], hint=f"{p}_gu", n_out=2, axis=-1, num_outputs=2)
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}_sig")], f"{p}_silu")
        out = linear(g, g.op("Mul", [act, up], f"{p}_act"), [layer.down], [None], f"{p}_down")
        if spec.norm_after:
            out = _rms_norm(g, out, layer.post_norm, eps, f"{p}_post_norm")
        h = g.op("Add", [residual, out], f"{p}_mlp_res")
    last = g.op(
        "Slice",
        [h, g.const("last_start", int64s([-1])), g.const("last_end", int64s([2**62])), g.const("axis1", int64s([1]))],
        "last",
    )
    last = _rms_norm(g, last, spec.final_norm, eps, "final_norm")
    logits = linear(g, last, [spec.lm_head], [spec.lm_head_bias], "lm_head")
    g.op_outputs("Squeeze", [logits, g.const("axis1", int64s([1]))], outputs=["logits"])
    hidden, n_layers = spec.hidden, len(spec.layers)

    def tensor(name: str, dims: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    inputs = [
        tensor(embeds, ["batch", "seq", hidden]),
        tensor(mask, ["batch", 1, "seq", "total"]),
        helper.make_tensor_value_info(position_ids, TensorProto.INT64, ["batch", "seq"]),
    ]
    graph_outputs = [tensor("logits", ["batch", spec.lm_head.shape[0]])]
    for i in range(n_layers):
        for kind in ("key", "value"):
            inputs.append(tensor(f"past_{kind}_{i}", ["batch", kv_heads, "past", head_dim]))
            graph_outputs.append(tensor(f"present_{kind}_{i}", ["batch", kv_heads, "total", head_dim]))
    graph = helper.make_graph(g.nodes, "decoder", inputs, graph_outputs, g.inits)
    model_proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edge-inspect lean decoder"
    )
    model_proto.ir_version = 8
    onnx.checker.check_model(model_proto)
    return model_proto


# -- bundles exported before the lean graph: read the spec back from their traced decoder ------------
_LINEAR = re.compile(r"^/layers\.(\d+)/(self_attn|mlp)/(q|k|v|o|gate|up|down)_proj/(MatMul|Add)$")


def spec_from_traced(path: Path) -> DecoderSpec:
    """The spec of a traced decoder.onnx (graphs.DecoderGraph): weights by the nodes' module paths,
    RMSNorm epsilon and RoPE frequencies from their constants. LeanUnsupported where it cannot tell."""
    model = onnx.load(str(path))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {out: node for node in model.graph.node for out in node.output}
    linear: dict[tuple[int, str, str], Array] = {}
    found: dict[str, Array] = {}
    for node in model.graph.node:
        weights = [values[i] for i in node.input if i in values and values[i].ndim >= 1 and values[i].size > 1]
        match = _LINEAR.match(node.name)
        if match and weights:
            layer, _, proj, op = match.groups()
            linear[(int(layer), proj, op)] = weights[0].T if op == "MatMul" else weights[0]
        elif node.name in ("/lm_head/MatMul", "/lm_head/Add") and weights:
            found[node.name] = weights[0].T if node.op_type == "MatMul" else weights[0]
        elif node.name.startswith("/rotary_emb") and node.op_type == "Mul":
            constant = [values[i] for i in node.input if i in values]
            if constant and constant[0].size > 1:
                found.setdefault(f"{node.name.split('/')[1]}.inv_freq", constant[0])
            elif constant and node.name.endswith("Mul_1"):
                found[f"{node.name.split('/')[1]}.scale"] = constant[0]
        elif node.name == "/layers.0/input_layernorm/Add":
            found["eps"] = next(values[i] for i in node.input if i in values)
        elif node.name == "/layers.0/self_attn/q_norm/Add":
            found["qk_eps"] = next(values[i] for i in node.input if i in values)
    tables = [k.removesuffix(".inv_freq") for k in found if k.endswith(".inv_freq")]
    if len(tables) != 1 or "eps" not in found or "/lm_head/MatMul" not in found:
        raise LeanUnsupported(
            f"{path}: not a decoder traced by this exporter with one RoPE table "
            f"(RoPE tables {tables}, eps {'eps' in found})"
        )
    n_layers = 1 + max(layer for layer, _, _ in linear)
    q_input = producer.get(next(n for n in model.graph.node if n.name == "/layers.0/self_attn/q_proj/MatMul").input[0])
    norm_after = q_input is None or not q_input.name.startswith("/layers.0/input_layernorm/")
    layers = []
    for i in range(n_layers):

        def w(name: str, i: int = i) -> Array:
            return values[f"lm.layers.{i}.{name}.weight"]

        layers.append(LayerSpec(
            q=linear[(i, "q", "MatMul")], k=linear[(i, "k", "MatMul")], v=linear[(i, "v", "MatMul")],
            o=linear[(i, "o", "MatMul")], gate=linear[(i, "gate", "MatMul")], up=linear[(i, "up", "MatMul")],
            down=linear[(i, "down", "MatMul")], input_norm=w("input_layernorm"),
            post_norm=w("post_attention_layernorm"), q_norm=w("self_attn.q_norm"), k_norm=w("self_attn.k_norm"),
            rope="scaled", q_bias=linear.get((i, "q", "Add")), k_bias=linear.get((i, "k", "Add")),
            v_bias=linear.get((i, "v", "Add")), o_bias=linear.get((i, "o", "Add"))))  # fmt: skip
    first = layers[0]
    head_dim = 2 * found[f"{tables[0]}.inv_freq"].size
    heads, kv_heads = first.q.shape[0] // head_dim, first.k.shape[0] // head_dim
    return DecoderSpec(
        hidden=first.q.shape[1], heads=heads, kv_heads=kv_heads, head_dim=head_dim, eps=float(found["eps"]),
        qk_norm_type="qwen3" if first.q_norm.size == head_dim else "olmo",
        qk_eps=float(found.get("qk_eps", found["eps"])), norm_after=norm_after,
        rope={"scaled": (found[f"{tables[0]}.inv_freq"], float(found.get(f"{tables[0]}.scale", 1.0)))},
        final_norm=values["lm.norm.weight"], lm_head=found["/lm_head/MatMul"], lm_head_bias=found.get("/lm_head/Add"),
        layers=layers)  # fmt: skip


def max_difference(a: Path, b: Path, seed: int = 0) -> float:
    """Largest |difference| of all outputs of two decoder graphs on random inputs (batch 2, 3 new
    tokens after 5 cached, a prefix-LM-like mask with one padded position)."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (a, b)]
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sessions[0].get_inputs():
        if i.name == "inputs_embeds":
            feeds[i.name] = rng.standard_normal((2, 3, i.shape[2])).astype(np.float32)
        elif i.name == "attention_mask":
            mask = np.triu(np.full((3, 8), -1e9, np.float32), k=6)[None, None].repeat(2, 0)
            mask[1, :, :, 0] = -1e9  # row 1 is left-padded by one
            feeds[i.name] = mask
        elif i.name == "position_ids":
            feeds[i.name] = np.array([[5, 6, 7], [4, 5, 6]], np.int64)
        else:
            feeds[i.name] = rng.standard_normal((2, i.shape[1], 5, i.shape[3])).astype(np.float32)
    outs = [s.run(None, feeds) for s in sessions]
    names = [o.name for o in sessions[1].get_outputs()]
    order = [names.index(o.name) for o in sessions[0].get_outputs()]
    return max(float(np.abs(x - outs[1][j]).max()) for x, j in zip(outs[0], order, strict=True))


TOLERANCE = 1e-4  # the parity tests' bound on |Δlogit|
