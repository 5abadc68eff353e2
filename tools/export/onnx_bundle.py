"""HF Molmo2 checkpoint → model bundle (three ONNX graphs, tokenizer, manifest with hashes)."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from tokenizers import Tokenizer

from edge_inspect.vlm.bundle import FORMAT, FORMAT_VERSION, MANIFEST, sha256_file

from .checkpoint import CheckpointError, image_settings, prompt_settings, settings_dict, token_ids
from .graphs import DecoderGraph, EmbedGraph, VisionGraph

OPSET = 18
_EXTERNAL_DATA_BYTES = 1_500_000_000  # graphs above this keep weights in a side file (protobuf limit is 2 GB)


def load_checkpoint(checkpoint: Path) -> torch.nn.Module:
    from transformers import Molmo2ForConditionalGeneration

    model = Molmo2ForConditionalGeneration.from_pretrained(checkpoint, attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=False)
    if model.ByteSize() > _EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")


def export_graphs(model: torch.nn.Module, out: Path, crops: int = 2, tokens: int = 5) -> None:
    cfg = model.config
    vis = cfg.vision_config
    text = cfg.text_config
    patches = (vis.image_size[0] // vis.patch_size) ** 2
    pixels = vis.patch_size * vis.patch_size * vis.num_channels
    pixel_values = torch.randn(crops, patches, pixels)
    pooling = torch.randint(0, crops * patches, (tokens, 4))
    _export(VisionGraph(model), (pixel_values, pooling), out / "vision.onnx", ["pixel_values", "pooling"],
            ["image_features"], {"pixel_values": {0: "crops"}, "pooling": {0: "tokens"}, "image_features": {0: "tokens"}})

    seq = 3
    ids = torch.randint(0, text.vocab_size, (1, seq))
    _export(EmbedGraph(model), (ids, torch.zeros(1, seq, text.hidden_size)), out / "embed.onnx",
            ["input_ids", "image_embeds"], ["inputs_embeds"],
            {"input_ids": {0: "batch", 1: "seq"}, "image_embeds": {0: "batch", 1: "seq"}, "inputs_embeds": {0: "batch", 1: "seq"}})

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
    _export(DecoderGraph(model), args, out / "decoder.onnx", ["inputs_embeds", "attention_mask", "position_ids", *past_names],
            ["logits", *present_names], dynamic)


def build_manifest(checkpoint: Path, out: Path, model: torch.nn.Module) -> dict[str, Any]:
    cfg = model.config
    text = cfg.text_config
    image = image_settings(checkpoint, cfg.vision_config.patch_size, cfg.vision_config.image_size[0])
    prompt = prompt_settings(checkpoint)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(out.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "checkpoint": checkpoint.name,
            "model_type": cfg.model_type,
            "architecture": type(model).__name__,
            "config_sha256": sha256_file(checkpoint / "config.json"),
            "parameters": sum(p.numel() for p in model.parameters()),
            "transformers": __import__("transformers").__version__,
            "torch": torch.__version__,
        },
        "preprocess": settings_dict(image),
        "prompt": {
            "chat_template": prompt.chat_template,
            "bos_token": prompt.bos_token,
            "image_placeholder": prompt.image_placeholder,
            "image_use_col_tokens": prompt.image_use_col_tokens,
            "use_single_crop_col_tokens": prompt.use_single_crop_col_tokens,
            "use_single_crop_start_token": prompt.use_single_crop_start_token,
        },
        "tokens": token_ids(checkpoint, tokenizer, cfg, prompt),
        "text": {
            "hidden_size": text.hidden_size,
            "num_layers": text.num_hidden_layers,
            "num_kv_heads": text.num_key_value_heads,
            "head_dim": head_dim,
            "vocab_size": text.vocab_size,
            "max_positions": text.max_position_embeddings,
        },
        "opset": OPSET,
        "graphs": {
            "vision": {"file": "vision.onnx", "precision": "fp32", "inputs": ["pixel_values", "pooling"], "outputs": ["image_features"]},
            "embed": {"file": "embed.onnx", "precision": "fp32", "inputs": ["input_ids", "image_embeds"], "outputs": ["inputs_embeds"]},
            "decoder": {"file": "decoder.onnx", "precision": "fp32",
                        "inputs": ["inputs_embeds", "attention_mask", "position_ids", "past_key_<i>", "past_value_<i>"],
                        "outputs": ["logits", "present_key_<i>", "present_value_<i>"]},
        },
        "files": files,
    }  # fmt: skip


def export_bundle(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Export ``checkpoint`` to a bundle folder ``out`` and return it."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint}: not a folder")
    if not (checkpoint / "config.json").is_file():
        raise CheckpointError(f"{checkpoint / 'config.json'}: missing (not a HuggingFace checkpoint folder)")
    if not (checkpoint / "tokenizer.json").is_file():
        raise CheckpointError(f"{checkpoint / 'tokenizer.json'}: missing (the runtime needs the fast tokenizer file)")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    # Settings are checked before the weights load, so a bad checkpoint fails fast.
    from transformers import Molmo2Config

    try:
        config = Molmo2Config.from_pretrained(checkpoint)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"{checkpoint / 'config.json'}: not a Molmo2 config ({str(err).splitlines()[0]})") from None
    image_settings(checkpoint, config.vision_config.patch_size, config.vision_config.image_size[0])
    prompt_settings(checkpoint)
    model = load_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint / "tokenizer.json", out / "tokenizer.json")
    export_graphs(model, out)
    manifest = build_manifest(checkpoint, out, model)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out
