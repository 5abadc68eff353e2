"""The decode-step graph: new tokens per row, K/V in preallocated buffers written in place.

The lean decoder (lean_decoder.py) serves the prefill and any runtime; it takes the past K/V and
returns ``present = past + new`` — the whole cache copied by ``Concat`` every step — and spends ~48
kernels per layer. This graph is for ONNX Runtime on CPU and uses its contrib ops:

* ``GroupQueryAttention`` with ``past_key`` and ``present_key`` bound to the same buffer
  [B, kv_heads, capacity, head_dim]: the new K/V row is written at ``seqlens_k`` and nothing is
  copied; RoPE is applied inside (``do_rotary`` with the checkpoint's cos/sin tables and the rows'
  ``position_ids``); padding and finished rows are masked by ``attention_bias``.
* ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization``: the RMSNorms, with the
  residual add fused into the next norm.

Inputs stay at one shape for the whole decode (capacity-wide bias, ``query_seqlens``), so a caller
binds every buffer once and updates them in place. ~18 kernels per layer instead of ~48.

A step takes ``tokens`` new tokens per row (usually 1): row b's first ``query_seqlens[b]`` are real,
the rest right padding; attention is causal inside the block and ``logits`` are those of each row's
last real token. Several tokens per row is how the runtime appends the tokens a pointing grammar
forces (jump-forward): one run instead of one per token.

Same arithmetic as the lean graph (qwen3-style q/k norm per head, or olmo-style over the whole
projection; norm before or after): the runtime checks the two agree before using this one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_inspect.vlm.manifest import STEP_GRAPH

from .lean_decoder import TOLERANCE, DecoderSpec, LayerSpec, LeanUnsupported, graph_from_spec
from .onnx_graph import GraphBuilder, int64s, linear

log = logging.getLogger(__name__)

DECODER_FILE, STEP_FILE, WEIGHTS_FILE = "decoder.onnx", "decoder_step.onnx", "decoder.weights"
STEP_IO = (
    [
        "inputs_embeds",
        "position_ids",
        "attention_bias",
        "seqlens_k",
        "total_sequence_length",
        "query_seqlens",
        "past_key_<i>",
        "past_value_<i>",
    ],
    ["logits", "present_key_<i>", "present_value_<i>"],
)


def _norm(g: GraphBuilder, x: str, weight: np.ndarray, eps: float, hint: str) -> str:
    return g.op(
        "SimplifiedLayerNormalization",
        [x, g.const(f"{hint}_w", weight.astype(np.float32))],
        hint,
        axis=-1,
        epsilon=eps,
        stash_type=1,
    )


def _skip_norm(g: GraphBuilder, x: str, skip: str, weight: np.ndarray, eps: float, hint: str) -> tuple[str, str]:
    """(RMSNorm(x + skip), x + skip)."""
    outs = [g.name(hint), g.name(f"{hint}_sum")]
    node = helper.make_node(
        "SkipSimplifiedLayerNormalization",
        [x, skip, g.const(f"{hint}_w", weight.astype(np.float32))],
        [outs[0], "", "", outs[1]],
        name=f"/{outs[0]}/SkipSimplifiedLayerNormalization",
        domain="com.microsoft",
        epsilon=eps,
    )
    g.nodes.append(node)
    return outs[0], outs[1]


def rope_cache(inv_freq: np.ndarray, scale: float, max_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [max_positions, head_dim / 2] as the lean graph computes them: the angle is a
    float32 product (position × inv_freq), its cosine rounded to float32, then × the scale in float32."""
    angles = np.arange(max_positions, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None]
    cos = np.cos(angles.astype(np.float64)).astype(np.float32)
    sin = np.sin(angles.astype(np.float64)).astype(np.float32)
    if scale != 1.0:
        cos, sin = cos * np.float32(scale), sin * np.float32(scale)
    return cos, sin


def build_step_graph(spec: DecoderSpec, max_positions: int) -> onnx.ModelProto:
    """The decode-step graph of ``spec`` (one RoPE table, norm before; see module docstring)."""
    if len({layer.rope for layer in spec.layers}) != 1:
        raise LeanUnsupported("RoPE tables differ between layers (the step graph handles one)")
    if spec.norm_after:
        raise LeanUnsupported("norm_after (the step graph fuses pre-norm residuals)")
    inv_freq, rope_scale = spec.rope[spec.layers[0].rope]
    heads, kv_heads, d = spec.heads, spec.kv_heads, spec.head_dim
    g = GraphBuilder()
    cos_table, sin_table = rope_cache(inv_freq, rope_scale, max_positions)
    cos, sin = g.const("cos_cache", cos_table), g.const("sin_cache", sin_table)
    seqlens, total, qlens = "seqlens_k", "total_sequence_length", "query_seqlens"
    h = residual = "inputs_embeds"
    for i, layer in enumerate(spec.layers):
        p = f"layers.{i}"
        if i == 0:
            x, residual = _norm(g, h, layer.input_norm, spec.eps, f"{p}_in_norm"), h
        else:
            x, residual = _skip_norm(g, h, residual, layer.input_norm, spec.eps, f"{p}_in_norm")
        qkv = linear(g, x, [layer.q, layer.k, layer.v], [layer.q_bias, layer.k_bias, layer.v_bias], f"{p}_qkv")
        if spec.qk_norm_type == "qwen3":
            heads4 = g.op("Reshape", [qkv, g.const("qkv_heads", int64s([0, 0, heads + 2 * kv_heads, d]))], f"{p}_qkv4")
            q, k, v = g.op_outputs(
                "Split",
                [heads4, g.const("head_sizes", int64s([heads, kv_heads, kv_heads]))],
                hint=f"{p}_split",
                n_out=3,
                axis=2,
            )
            q = _norm(g, q, layer.q_norm, spec.qk_eps, f"{p}_q_norm")
            k = _norm(g, k, layer.k_norm, spec.qk_eps, f"{p}_k_norm")
            flat = g.const("flat3", int64s([0, 0, -1]))
            q, k, v = (g.op("Reshape", [t, flat], f"{p}_{n}3") for t, n in ((q, "q"), (k, "k"), (v, "v")))
        else:
            sizes = g.const("qkv_sizes", int64s([heads * d, kv_heads * d, kv_heads * d]))
            q, k, v = g.op_outputs("Split", [qkv, sizes], hint=f"{p}_split", n_out=3, axis=-1)
            q = _norm(g, q, layer.q_norm, spec.qk_eps, f"{p}_q_norm")
            k = _norm(g, k, layer.k_norm, spec.qk_eps, f"{p}_k_norm")
        ctx = g.name(f"{p}_attn")
        g.nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [
                    q,
                    k,
                    v,
                    f"past_key_{i}",
                    f"past_value_{i}",
                    seqlens,
                    total,
                    cos,
                    sin,
                    "position_ids",
                    "attention_bias",
                    "",
                    "",
                    "",
                    "",
                    "",
                    qlens,
                ],
                [ctx, f"present_key_{i}", f"present_value_{i}"],
                name=f"/{p}_attn/GroupQueryAttention",
                domain="com.microsoft",
                num_heads=heads,
                kv_num_heads=kv_heads,
                do_rotary=1,
                rotary_interleaved=0,
                scale=float(d**-0.5),
            )
        )
        attn = linear(g, ctx, [layer.o], [layer.o_bias], f"{p}_o")
        x, residual = _skip_norm(g, attn, residual, layer.post_norm, spec.eps, f"{p}_post_norm")
        gate_up = linear(g, x, [layer.gate, layer.up], [None, None], f"{p}_gate_up")
        gate, up = g.op_outputs("Split", [gate_up], hint=f"{p}_gu", n_out=2, axis=-1, num_outputs=2)
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}_sig")], f"{p}_silu"), up], f"{p}_act")
        h = linear(g, act, [layer.down], [None], f"{p}_down")
    x, _ = _skip_norm(g, h, residual, spec.final_norm, spec.eps, "final_norm")
    # Each row's last new token (query_seqlens - 1; 0 for an idle row) is the one whose logits count.
    last = g.op("Sub", [qlens, g.const("one", np.array(1, np.int32))], "last_minus")
    last = g.op("Max", [last, g.const("zero", np.array(0, np.int32))], "last_clip")
    last = g.op("Cast", [last], "last_i64", to=TensorProto.INT64)
    last = g.op("Reshape", [last, g.const("last_shape", int64s([-1, 1, 1]))], "last_3d")
    last = g.op("Expand", [last, g.const("last_wide", int64s([1, 1, spec.hidden]))], "last_idx")
    x = g.op("GatherElements", [x, last], "last_token", axis=1)
    logits = linear(g, x, [spec.lm_head], [spec.lm_head_bias], "lm_head")
    g.op_outputs("Reshape", [logits, g.const("logits_shape", int64s([0, -1]))], outputs=["logits"])

    def tensor(name: str, dims: list, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, dtype, dims)

    inputs = [
        tensor("inputs_embeds", ["batch", "tokens", spec.hidden]),
        tensor("position_ids", ["batch", "tokens"], TensorProto.INT64),
        tensor("attention_bias", ["batch", 1, "tokens", "capacity"]),
        tensor(seqlens, ["batch"], TensorProto.INT32),
        tensor(total, [], TensorProto.INT32),
        tensor(qlens, ["batch"], TensorProto.INT32),
    ]
    outputs = [tensor("logits", ["batch", spec.lm_head.shape[0]])]
    for i in range(len(spec.layers)):
        for kind in ("key", "value"):
            inputs.append(tensor(f"past_{kind}_{i}", ["batch", kv_heads, "capacity", d]))
            outputs.append(tensor(f"present_{kind}_{i}", ["batch", kv_heads, "capacity", d]))
    graph = helper.make_graph(g.nodes, STEP_GRAPH, inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)],
        producer_name="edge-inspect step decoder",
    )
    model.ir_version = 8
    return model


def _raw_key(tensor: onnx.TensorProto, raw: bytes) -> tuple:
    return tensor.data_type, tuple(tensor.dims), hashlib.sha256(raw).hexdigest()


def save_sharing_weights(decoder: onnx.ModelProto, step: onnx.ModelProto, folder: Path) -> None:
    """``decoder.onnx`` with its weights in ``decoder.weights``, and ``decoder_step.onnx`` whose
    weight tensors point into the same file: the bundle carries the matrices once."""
    onnx.save_model(
        decoder,
        str(folder / DECODER_FILE),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=WEIGHTS_FILE,
        size_threshold=1024,
    )
    saved = onnx.load(str(folder / DECODER_FILE), load_external_data=False)
    data = (folder / WEIGHTS_FILE).read_bytes()
    shared = {}
    for tensor in saved.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}
            offset, length = int(entry.get("offset", 0)), int(entry["length"])
            shared[_raw_key(tensor, data[offset : offset + length])] = list(tensor.external_data)
    step = onnx.ModelProto.FromString(step.SerializeToString())
    for tensor in step.graph.initializer:
        entries = shared.get(_raw_key(tensor, tensor.raw_data)) if tensor.raw_data else None
        if entries:
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            tensor.external_data.extend(entries)
    onnx.save_model(step, str(folder / STEP_FILE))
    (folder / WEIGHTS_FILE).chmod(0o644)  # onnx writes the side file owner-only; the service user reads it


def step_difference(decoder: Path, step: Path, seed: int = 0) -> float:
    """Largest |difference| between the decoder graph and the step graph on one decode step of a
    random batch (edge_inspect.vlm.step_decode.probe_difference, the runtime's load check)."""
    import onnxruntime as ort

    from edge_inspect.vlm.step_decode import probe_difference

    ref = ort.InferenceSession(str(decoder), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(str(step), providers=["CPUExecutionProvider"])

    def runner(session):
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(None, feeds), strict=True))

    past = next(i for i in ref.get_inputs() if i.name.startswith("past_"))
    layers = sum(1 for i in ref.get_inputs() if i.name.startswith("past_key_"))
    return probe_difference(
        runner(ref),
        runner(new),
        ref.get_inputs()[0].shape[2],
        past.shape[1],
        past.shape[3],
        layers,
        float(np.finfo(np.float32).min),
        seed,
    )[0]


DecoderBuilder = Callable[[DecoderSpec, int], onnx.ModelProto]  # (spec, opset) -> the lean decoder graph


def write_decoders(
    spec: DecoderSpec, folder: Path, opset: int, max_positions: int, build_decoder: DecoderBuilder = graph_from_spec
) -> float | None:
    """The lean decoder and, where the spec allows, the step graph beside it (sharing weights).
    Returns the step graph's largest difference to the decoder, or None when there is no step graph;
    a step graph that differs by more than TOLERANCE is not kept. ``build_decoder``: graph_from_spec
    (a test passes one that computes otherwise, to see the check refuse it)."""
    decoder = build_decoder(spec, opset)
    try:
        step = build_step_graph(spec, max_positions)
    except LeanUnsupported as err:
        log.info("no decode-step graph: %s", err)
        onnx.save_model(
            decoder,
            str(folder / DECODER_FILE),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=WEIGHTS_FILE,
            size_threshold=1024,
        )
        (folder / WEIGHTS_FILE).chmod(0o644)
        return None
    save_sharing_weights(decoder, step, folder)
    difference = step_difference(folder / DECODER_FILE, folder / STEP_FILE)
    if difference > TOLERANCE:
        log.warning("decode-step graph differs from the decoder by %.2e (> %g): not kept", difference, TOLERANCE)
        (folder / STEP_FILE).unlink()
        return None
    return difference


def _rope_of(nodes: dict[str, onnx.NodeProto], layer: str) -> str:
    """Which RoPE table layer ``layer`` multiplies its queries by (lean graph names rope_<table>_cos4)."""
    table = re.sub(r"_\d+$", "", nodes[f"{layer}_q_rope_cos"].input[1])
    return table.removeprefix("rope_").removesuffix("_cos4").removesuffix("_cos_s")


def _scalar(value: np.ndarray) -> float:
    return float(np.asarray(value).reshape(-1)[0])


# -- the spec back from a lean decoder.onnx (bundles exported with the lean graph) ---------------
def spec_from_lean(path: Path) -> DecoderSpec:
    """Read the weights and constants of a lean decoder graph (lean_decoder.graph_from_spec) back."""
    model = onnx.load(str(path))
    if model.producer_name != "edge-inspect lean decoder":
        raise LeanUnsupported(f"{path}: not a lean decoder graph (producer {model.producer_name!r})")
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    by_hint: dict[str, np.ndarray] = {}
    for name, value in values.items():
        by_hint.setdefault(re.sub(r"_\d+$", "", name), value)
    nodes = {re.sub(r"_\d+$", "", n.output[0]): n for n in model.graph.node}

    def const_of(node_hint: str, index: int) -> np.ndarray:
        return values[nodes[node_hint].input[index]]

    n_layers = 1 + max(int(m.group(1)) for k in by_hint if (m := re.match(r"layers\.(\d+)_", k)))
    sizes = [int(s) for s in by_hint["qkv_sizes"]]
    q4 = by_hint["q_shape"]
    heads, head_dim = int(q4[2]), int(q4[3])
    kv_heads = sizes[1] // head_dim
    qk_norm_type = "qwen3" if by_hint["layers.0_q_norm_w"].size == head_dim else "olmo"
    norm_after = "layers.0_in_norm" not in nodes or nodes["layers.0_qkv"].input[0] == "inputs_embeds"
    layers = []
    for i in range(n_layers):
        p = f"layers.{i}"
        qkv = by_hint[f"{p}_qkv_w"].T
        gate_up = by_hint[f"{p}_gate_up_w"].T
        qkv_b = by_hint.get(f"{p}_qkv_b")
        o_b = by_hint.get(f"{p}_o_b")
        split = np.cumsum(sizes)[:-1]
        q, k, v = np.split(qkv, split, axis=0)
        qb, kb, vb = np.split(qkv_b, split) if qkv_b is not None else (None, None, None)
        gate, up = np.split(gate_up, 2, axis=0)
        layers.append(
            LayerSpec(
                q=q,
                k=k,
                v=v,
                o=by_hint[f"{p}_o_w"].T,
                gate=gate,
                up=up,
                down=by_hint[f"{p}_down_w"].T,
                input_norm=by_hint[f"{p}_in_norm_w"],
                post_norm=by_hint[f"{p}_post_norm_w"],
                q_norm=by_hint[f"{p}_q_norm_w"],
                k_norm=by_hint[f"{p}_k_norm_w"],
                rope=_rope_of(nodes, p),
                q_bias=qb,
                k_bias=kb,
                v_bias=vb,
                o_bias=o_b,
            )
        )
    rope = {}
    for key in by_hint:
        if m := re.fullmatch(r"rope_(\w+)_inv_freq", key):
            name = m.group(1)
            rope[name] = (by_hint[key], _scalar(by_hint.get(f"rope_{name}_scale", np.ones(1))))
    eps = _scalar(const_of("layers.0_in_norm_var", 1)) if not norm_after else _scalar(by_hint["eps"])
    qk_eps = _scalar(const_of("layers.0_q_norm_var", 1))
    return DecoderSpec(
        hidden=layers[0].q.shape[1],
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        eps=eps,
        qk_norm_type=qk_norm_type,
        qk_eps=qk_eps,
        norm_after=norm_after,
        rope=rope,
        final_norm=by_hint["final_norm_w"],
        lm_head=by_hint["lm_head_w"].T,
        lm_head_bias=by_hint.get("lm_head_b"),
        layers=layers,
    )
