"""Read a HuggingFace Molmo2 checkpoint folder: the model and every setting the runtime must honour."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from edge_inspect.vlm.preprocess import ImageSettings
from edge_inspect.vlm.prompt import PromptSettings

# PIL resample codes the HF processor may name; only bilinear is what Molmo2 uses and we reproduce.
_BILINEAR = (2, "bilinear", "BILINEAR")
YES_WORDS = ("Yes", " Yes", "yes", " yes", "YES")
NO_WORDS = ("No", " No", "no", " no", "NO")


class CheckpointError(Exception):
    """The checkpoint folder lacks something or holds a setting we cannot reproduce."""


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path}: missing")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


def image_settings(checkpoint: Path, vision_patch: int, vision_size: int) -> ImageSettings:
    pre = _read_json(checkpoint / "preprocessor_config.json")
    size = pre.get("size", {"height": 378, "width": 378})
    crop = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else int(size)
    if isinstance(size, dict) and size.get("width", crop) != crop:
        raise CheckpointError(f"{checkpoint / 'preprocessor_config.json'}: size must be square, got {size}")
    if pre.get("resample", 2) not in _BILINEAR:
        raise CheckpointError(f"{checkpoint / 'preprocessor_config.json'}: resample {pre['resample']!r} is not bilinear")
    if pre.get("do_resize", True) is not True:
        raise CheckpointError(f"{checkpoint / 'preprocessor_config.json'}: do_resize must be true for Molmo2")
    s = ImageSettings(
        crop_size=int(crop),
        patch_size=int(pre.get("patch_size", 14)),
        max_crops=int(pre.get("max_crops", 8)),
        overlap_margins=tuple(pre.get("overlap_margins", (4, 4))),
        pooling_size=tuple(pre.get("pooling_size", (2, 2))),
        image_mean=tuple(pre.get("image_mean", (0.5, 0.5, 0.5))),
        image_std=tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
        do_rescale=bool(pre.get("do_rescale", True)),
        rescale_factor=float(pre.get("rescale_factor", 1 / 255)),
        do_normalize=bool(pre.get("do_normalize", True)),
        do_convert_rgb=bool(pre.get("do_convert_rgb", True)),
    )
    if s.patch_size != vision_patch or s.crop_size != vision_size:
        raise CheckpointError(
            f"{checkpoint}: preprocessor crop {s.crop_size}px / patch {s.patch_size} does not match the vision "
            f"model's {vision_size}px / {vision_patch} (the ViT position table needs exact crops)"
        )
    return s


def chat_template(checkpoint: Path) -> str:
    for name in ("chat_template.jinja",):
        if (checkpoint / name).is_file():
            return (checkpoint / name).read_text(encoding="utf-8")
    for name in ("chat_template.json", "processor_config.json", "tokenizer_config.json"):
        template = _read_json(checkpoint / name, required=False).get("chat_template")
        if isinstance(template, str):
            return template
    raise CheckpointError(f"{checkpoint}: no chat template (chat_template.jinja or *config.json 'chat_template')")


def prompt_settings(checkpoint: Path) -> PromptSettings:
    proc = _read_json(checkpoint / "processor_config.json", required=False)
    tok_cfg = _read_json(checkpoint / "tokenizer_config.json")
    bos = tok_cfg.get("bos_token") or tok_cfg.get("eos_token")  # Molmo2Processor falls back to EOS
    if isinstance(bos, dict):
        bos = bos.get("content")
    if not bos:
        raise CheckpointError(f"{checkpoint / 'tokenizer_config.json'}: neither bos_token nor eos_token is set")
    return PromptSettings(
        chat_template=chat_template(checkpoint),
        bos_token=bos,
        image_placeholder=tok_cfg.get("image_token", "<|image|>"),
        image_use_col_tokens=bool(proc.get("image_use_col_tokens", True)),
        use_single_crop_col_tokens=proc.get("use_single_crop_col_tokens"),
        use_single_crop_start_token=bool(proc.get("use_single_crop_start_token", True)),
    )


def single_token_ids(tokenizer: Tokenizer, words: tuple[str, ...], vocab_size: int) -> list[int]:
    """Ids of the words that are one token in the LM head's vocabulary."""
    ids = set()
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False).ids
        if len(encoded) == 1 and encoded[0] < vocab_size:
            ids.add(encoded[0])
    return sorted(ids)


def token_ids(checkpoint: Path, tokenizer: Tokenizer, config: Any, prompt: PromptSettings) -> dict[str, Any]:
    gen = _read_json(checkpoint / "generation_config.json", required=False)
    eos = gen.get("eos_token_id")
    if eos is None:
        eos_token = _read_json(checkpoint / "tokenizer_config.json").get("eos_token")
        eos = tokenizer.token_to_id(eos_token if isinstance(eos_token, str) else eos_token["content"])
    eos_ids = eos if isinstance(eos, list) else [eos]
    vocab = config.text_config.vocab_size
    yes = single_token_ids(tokenizer, YES_WORDS, vocab)
    no = single_token_ids(tokenizer, NO_WORDS, vocab)
    if not yes or not no:
        raise CheckpointError(f"{checkpoint}: the tokenizer has no single-token 'Yes'/'No' for yes/no scoring")
    bos = tokenizer.token_to_id(prompt.bos_token)
    if bos is None:
        raise CheckpointError(f"{checkpoint}: BOS token {prompt.bos_token!r} is not in tokenizer.json")
    return {"bos": bos, "eos": [int(i) for i in eos_ids], "image_patch": int(config.image_patch_id), "yes": yes, "no": no}


def settings_dict(s: ImageSettings) -> dict[str, Any]:
    d = asdict(s)
    d["resample"] = "bilinear"
    return d
