"""HF Molmo2 checkpoint → model bundle (three ONNX graphs, tokenizer, manifest with hashes)."""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import torch

from edge_inspect.vlm.bundle import MANIFEST, sha256_file
from edge_inspect.vlm.manifest import (
    FORMAT,
    FORMAT_VERSION,
    STEP_GRAPH,
    FileEntry,
    Graph,
    Manifest,
    Preprocess,
    Prompt,
    Source,
    Text,
    Tokens,
)
from tools.molmo2.checkpoint import CheckpointInfo, inspect_checkpoint, load_checkpoint

from .graphs import DecoderGraph, EmbedGraph, VisionGraph
from .lean_decoder import LeanUnsupported, spec_from_model
from .staging import check_target, staged_folder
from .step_decoder import STEP_FILE, STEP_IO, write_decoders

if TYPE_CHECKING:
    from transformers import Molmo2ForConditionalGeneration

log = logging.getLogger(__name__)

OPSET = 18
LINEAGE_FILE = "lineage.json"  # beside a checkpoint a training run wrote: the lineage the manifest carries
_EXTERNAL_DATA_BYTES = 1_500_000_000  # graphs above this keep weights in a side file (protobuf limit is 2 GB)
GRAPH_IO = {
    "vision": (["pixel_values", "pooling"], ["image_features"]),
    "embed": (["input_ids", "image_embeds"], ["inputs_embeds"]),
    "decoder": (
        ["inputs_embeds", "attention_mask", "position_ids", "past_key_<i>", "past_value_<i>"],
        ["logits", "present_key_<i>", "present_value_<i>"],
    ),
}


def _export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=False)
    if model.ByteSize() > _EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")


def export_graphs(
    model: Molmo2ForConditionalGeneration, out: Path, crops: int = 2, tokens: int = 5, lean: bool = True
) -> None:
    cfg = model.config
    vis = cfg.vision_config
    text = cfg.text_config
    patches = (vis.image_size[0] // vis.patch_size) ** 2
    pixels = vis.patch_size * vis.patch_size * vis.num_channels
    pixel_values = torch.randn(crops, patches, pixels)
    pooling = torch.randint(0, crops * patches, (tokens, 4))
    _export(
        VisionGraph(model),
        (pixel_values, pooling),
        out / "vision.onnx",
        ["pixel_values", "pooling"],
        ["image_features"],
        {"pixel_values": {0: "crops"}, "pooling": {0: "tokens"}, "image_features": {0: "tokens"}},
    )

    seq = 3
    ids = torch.randint(0, text.vocab_size, (1, seq))
    _export(
        EmbedGraph(model),
        (ids, torch.zeros(1, seq, text.hidden_size)),
        out / "embed.onnx",
        ["input_ids", "image_embeds"],
        ["inputs_embeds"],
        {
            "input_ids": {0: "batch", 1: "seq"},
            "image_embeds": {0: "batch", 1: "seq"},
            "inputs_embeds": {0: "batch", 1: "seq"},
        },
    )

    past_len = 2
    n_layers = text.num_hidden_layers
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    past = [torch.randn(1, text.num_key_value_heads, past_len, head_dim) for _ in range(2 * n_layers)]
    past_names = [f"past_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    present_names = [f"present_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]
    dynamic = {
        "inputs_embeds": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 2: "seq", 3: "total"},
        "position_ids": {0: "batch", 1: "seq"},
        "logits": {0: "batch"},
    }
    dynamic.update({n: {0: "batch", 2: "past"} for n in past_names})
    dynamic.update({n: {0: "batch", 2: "total"} for n in present_names})
    args = (
        torch.randn(1, seq, text.hidden_size),
        torch.zeros(1, 1, seq, past_len + seq),
        torch.arange(past_len, past_len + seq)[None],
        *past,
    )
    try:  # written op by op: a fraction of the traced graph's kernels per decode step (lean_decoder.py)
        if not lean:
            raise LeanUnsupported("asked for the traced graph")
        spec = spec_from_model(model)
    except LeanUnsupported as err:
        log.info("decoder: traced graph (%s)", err)
        _export(
            DecoderGraph(model),
            args,
            out / "decoder.onnx",
            ["inputs_embeds", "attention_mask", "position_ids", *past_names],
            ["logits", *present_names],
            dynamic,
        )
        return
    difference = write_decoders(spec, out, OPSET, text.max_position_embeddings)
    if difference is not None:
        log.info("decoder: lean graph + decode-step graph (max |difference| %.1e)", difference)


def file_entries(folder: Path) -> dict[str, dict[str, object]]:
    """sha256 and size of every file of a bundle folder except the manifest."""
    return {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def graph_io(folder: Path) -> dict[str, tuple[list[str], list[str]]]:
    """The graphs of a bundle folder and their I/O: the three of every bundle, plus the decode-step
    graph where the export wrote one."""
    return {**GRAPH_IO, STEP_GRAPH: STEP_IO} if (folder / STEP_FILE).is_file() else dict(GRAPH_IO)


def build_manifest(info: CheckpointInfo, out: Path, model: Molmo2ForConditionalGeneration) -> Manifest:
    cfg = model.config
    text = cfg.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        source=Source(
            checkpoint=info.path.name,
            model_type=cfg.model_type,
            architecture=type(model).__name__,
            config_sha256=sha256_file(info.path / "config.json"),
            parameters=sum(p.numel() for p in model.parameters()),
            transformers=__import__("transformers").__version__,
            torch=torch.__version__,
        ),
        preprocess=Preprocess.from_settings(info.image),
        prompt=Prompt(
            chat_template=info.prompt.chat_template,
            bos_token=info.prompt.bos_token,
            image_placeholder=info.prompt.image_placeholder,
            image_use_col_tokens=info.prompt.image_use_col_tokens,
            use_single_crop_col_tokens=info.prompt.use_single_crop_col_tokens,
            use_single_crop_start_token=info.prompt.use_single_crop_start_token,
        ),
        tokens=Tokens.model_validate(info.tokens),
        text=Text(
            hidden_size=text.hidden_size,
            num_layers=text.num_hidden_layers,
            num_kv_heads=text.num_key_value_heads,
            head_dim=head_dim,
            vocab_size=text.vocab_size,
            max_positions=text.max_position_embeddings,
        ),
        opset=OPSET,
        graphs={
            name: Graph(file=f"{name}.onnx", precision="fp32", inputs=tuple(io[0]), outputs=tuple(io[1]))
            for name, io in graph_io(out).items()
        },
        files={name: FileEntry.model_validate(entry) for name, entry in file_entries(out).items()},
    )


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    overwrite: bool = False,
    lean: bool = True,
    write_graphs: Callable[..., None] = export_graphs,
) -> Path:
    """Export ``checkpoint`` to a bundle folder ``out`` and return it.

    Every check that needs no weights runs first (CheckpointError naming the file); the bundle is
    written beside ``out`` and renamed into place only when complete. ``write_graphs(model, folder,
    lean=…)`` writes the graphs into the staging folder (export_graphs; a test passes one that fails)."""
    checkpoint, out = Path(checkpoint), Path(out)
    check_target(out, overwrite)
    info = inspect_checkpoint(checkpoint)
    model = load_checkpoint(checkpoint, checked=True)
    log.info("exporting %s (%.1f M parameters) to %s", checkpoint, info.parameters / 1e6, out)
    with staged_folder(out, overwrite) as tmp:
        shutil.copyfile(checkpoint / "tokenizer.json", tmp / "tokenizer.json")
        write_graphs(model, tmp, lean=lean)
        manifest = build_manifest(info, tmp, model)
        lineage = checkpoint / LINEAGE_FILE  # written by a training run (tools/distill): its parent and data
        if lineage.is_file():
            manifest = manifest.model_copy(update={"lineage": json.loads(lineage.read_text())})
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return out
