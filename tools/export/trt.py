"""TensorRT engines from a bundle's ONNX graphs, and the checks that a graph is fit for TensorRT.

Engines are specific to one GPU and one TensorRT version, so they are built on the target
device: export on an x86 host → copy the bundle to the Jetson → ``python -m tools.export trt``
there (at install time, or by the service before its first start). The equivalent ``trtexec``
command lines are printed too, for devices without the Python bindings.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from edge_inspect.vlm.bundle import Bundle, load_bundle_files
from edge_inspect.vlm.engines import ENGINE_DIR, METADATA, detect_environment
from edge_inspect.vlm.preprocess import crop_geometry
from tools.molmo2.errors import CheckpointError

# Largest batch of prompts per decoder run (a recipe has at most 16 checks; the engine batches them).
MAX_BATCH = 16
UNSUPPORTED_OPS = {"NonZero", "If", "Loop", "Scan", "SequenceConstruct", "SequenceAt", "Unique"}
MAX_OPSET = 18


@dataclass(frozen=True)
class GraphProblem:
    graph: str
    problem: str


def check_graph(path: Path) -> list[GraphProblem]:
    """Problems that would stop TensorRT: data-dependent ops, opset above 18, inputs of unknown rank."""
    model = onnx.load(str(path), load_external_data=False)
    name = path.stem
    problems = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > MAX_OPSET:
            problems.append(GraphProblem(name, f"opset {opset.version} > {MAX_OPSET}"))
    ops = {n.op_type for n in model.graph.node}
    for op in sorted(ops & UNSUPPORTED_OPS):
        problems.append(GraphProblem(name, f"operator {op} (data-dependent; TensorRT cannot build it)"))
    for value in list(model.graph.input) + list(model.graph.output):
        if not value.type.tensor_type.HasField("shape"):
            problems.append(GraphProblem(name, f"{value.name} has no static rank"))
    return problems


def check_bundle(bundle_path: Path) -> list[GraphProblem]:
    bundle = load_bundle_files(bundle_path)
    return [p for g in ("vision", "embed", "decoder") for p in check_graph(bundle.graph_path(g))]


def _vision_limits(bundle: Bundle) -> tuple[int, int]:
    """Most crops and most image tokens any image can produce with this bundle's settings."""
    s = bundle.image
    window = (s.crop_patches - sum(s.overlap_margins)) * s.patch_size
    margin = sum(s.overlap_margins) * s.patch_size
    crops = tokens = 0
    for rows, cols in itertools.product(range(1, s.max_crops + 1), repeat=2):
        if rows * cols > s.max_crops:
            continue
        _, _, ch, cw = crop_geometry(rows * window + margin, cols * window + margin, s)
        pooled = -(-(ch // s.patch_size) // s.pooling_size[0]) * -(-(cw // s.patch_size) // s.pooling_size[1])
        low = -(-s.crop_patches // s.pooling_size[0]) * -(-s.crop_patches // s.pooling_size[1])
        crops, tokens = max(crops, rows * cols + 1), max(tokens, pooled + low)
    return crops, tokens


def profiles(
    bundle: Bundle, max_seq: int = 1024, max_context: int = 2048, max_batch: int = MAX_BATCH
) -> dict[str, dict[str, tuple]]:
    """min / opt / max shapes per input of each graph. The decoder takes up to ``max_batch`` rows
    (the batched prefill of a recipe's prompts and their joint decoding)."""
    s, t = bundle.image, bundle.text
    crops, tokens = _vision_limits(bundle)
    patches, pixels = s.patches_per_crop, s.patch_size * s.patch_size * 3
    pool = s.pooling_size[0] * s.pooling_size[1]
    h, kv, hd = t.hidden_size, t.num_kv_heads, t.head_dim
    # One profile; its optimum is a decode step after a typical image prompt, the most frequent call.
    context = min(max_context - 1, tokens + 64)
    b = max_batch
    decoder = {
        "inputs_embeds": ((1, 1, h), (1, 1, h), (b, max_seq, h)),
        "attention_mask": ((1, 1, 1, 1), (1, 1, 1, context + 1), (b, 1, max_seq, max_context)),
        "position_ids": ((1, 1), (1, 1), (b, max_seq)),
    }
    for i in range(t.num_layers):
        for kind in ("key", "value"):
            decoder[f"past_{kind}_{i}"] = ((1, kv, 0, hd), (1, kv, context, hd), (b, kv, max_context - 1, hd))
    opt_seq = min(max_seq, tokens + 32)
    return {
        "vision": {
            "pixel_values": ((1, patches, pixels), (crops, patches, pixels), (crops, patches, pixels)),
            "pooling": ((1, pool), (tokens, pool), (tokens, pool)),
        },
        "embed": {
            "input_ids": ((1, 1), (1, opt_seq), (1, max_seq)),
            "image_embeds": ((1, 1, h), (1, opt_seq, h), (1, max_seq, h)),
        },
        "decoder": decoder,
    }


def _shape(dims: tuple) -> str:
    return "x".join(str(d) for d in dims)


def trtexec_commands(bundle: Bundle, precision: str) -> list[str]:
    flags = {"fp16": "--fp16", "int8": "--int8 --fp16", "fp32": ""}[precision]
    lines = []
    for graph, shapes in profiles(bundle).items():
        spec = {
            k: ",".join(f"{n}:{_shape(v[i])}" for n, v in shapes.items()) for i, k in enumerate(("min", "opt", "max"))
        }
        lines.append(
            f"trtexec --onnx={graph}.onnx --saveEngine={ENGINE_DIR}/{graph}.{precision}.engine {flags} "
            f"--minShapes={spec['min']} --optShapes={spec['opt']} --maxShapes={spec['max']} "
            f"--timingCacheFile={ENGINE_DIR}/timing.cache".replace("  ", " ")
        )
    return lines


def build_engines(bundle_path: str | Path, precision: str = "fp16", workspace_mb: int = 2048) -> Path:
    """Build one engine per graph into BUNDLE/engines/ with metadata naming this GPU and TensorRT."""
    import tensorrt as trt

    bundle_path = Path(bundle_path)
    bundle = load_bundle_files(bundle_path)
    problems = check_bundle(bundle_path)
    if problems:
        raise CheckpointError("; ".join(f"{p.graph}: {p.problem}" for p in problems))
    env = detect_environment()
    out = bundle_path / ENGINE_DIR
    out.mkdir(exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_path = out / "timing.cache"
    engines = {}
    for graph, shapes in profiles(bundle).items():
        start = time.perf_counter()
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(bundle.graph_path(graph))):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise CheckpointError(f"{graph}.onnx: TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit INT8 from the graph's Q/DQ nodes
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise CheckpointError(f"{graph}.onnx: TensorRT could not build an engine (see the log above)")
        name = f"{graph}.{precision}.engine"
        (out / name).write_bytes(bytes(serialized))
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        engines[graph] = {
            "file": name,
            "build_s": round(time.perf_counter() - start, 1),
            "profile": {n: [list(v) for v in s] for n, s in shapes.items()},
        }
    metadata = {
        "tensorrt_version": env.tensorrt, "gpu_name": env.gpu, "compute_capability": env.compute_capability,
        "l4t": env.l4t, "precision": precision, "flags": {"fp16": precision in ("fp16", "int8"), "int8": precision == "int8"},
        "workspace_mb": workspace_mb, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle_manifest_sha256": bundle.sha256, "engines": engines,
    }  # fmt: skip
    (out / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return out
