"""Read a HuggingFace Molmo2 checkpoint folder: every setting the runtime must honour, checked
before the model is built; then the model itself.

``inspect_checkpoint`` does every check that needs no weights (config and ``model_type``,
processor settings, chat template, tokenizer, yes/no tokens, safetensors headers against the
config); ``load_checkpoint`` loads the model only after that passed. Each problem is a
``CheckpointError`` whose message starts with the file it is about.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from edge_inspect.vlm.manifest import geometry_problem
from edge_inspect.vlm.preprocess import ImageSettings
from edge_inspect.vlm.prompt import PromptSettings

from .errors import CheckpointError
from .weights import check_weights

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "NO_WORDS",
    "YES_WORDS",
    "chat_template",
    "image_settings",
    "inspect_checkpoint",
    "load_checkpoint",
    "load_config",
    "prompt_settings",
    "read_tokenizer",
    "settings_dict",
    "single_token_ids",
    "token_ids",
]

log = logging.getLogger(__name__)

MODEL_TYPE = "molmo2"
# PIL resample codes the HF processor may name; only bilinear is what Molmo2 uses and we reproduce.
_BILINEAR = (2, "bilinear", "BILINEAR")
YES_WORDS = ("Yes", " Yes", "yes", " yes", "YES")
NO_WORDS = ("No", " No", "no", " no", "NO")


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path}: missing")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def load_config(checkpoint: Path) -> Any:
    """The Molmo2Config of ``checkpoint``; refuses another ``model_type`` before transformers
    would fill in the 8.7 B default for every missing value."""
    path = checkpoint / "config.json"
    raw = _read_json(path)
    model_type = raw.get("model_type")
    if model_type != MODEL_TYPE:
        raise CheckpointError(
            f"{path}: model_type {model_type!r} is not {MODEL_TYPE!r} (only Molmo2 checkpoints are exported)"
        )
    from transformers import Molmo2Config

    try:
        return Molmo2Config.from_pretrained(checkpoint)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a Molmo2 config ({str(err).splitlines()[0]})") from None


def image_settings(checkpoint: Path, vision_patch: int, vision_size: int) -> ImageSettings:
    path = checkpoint / "preprocessor_config.json"
    pre = _read_json(path)
    size = pre.get("size", {"height": 378, "width": 378})
    crop = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
    if isinstance(size, dict) and size.get("width", crop) != crop:
        raise CheckpointError(f"{path}: size must be square, got {size}")
    if pre.get("resample", 2) not in _BILINEAR:
        raise CheckpointError(f"{path}: resample {pre['resample']!r} is not bilinear")
    if pre.get("do_resize", True) is not True:
        raise CheckpointError(f"{path}: do_resize must be true for Molmo2")
    if crop is None:
        raise CheckpointError(f"{path}: unreadable setting (size {size!r} gives no crop height)")
    try:
        crop_size = int(crop)
        patch_size = int(pre.get("patch_size", 14))
        max_crops = int(pre.get("max_crops", 8))
        margins = tuple(int(v) for v in pre.get("overlap_margins", (4, 4)))
        pooling = tuple(int(v) for v in pre.get("pooling_size", (2, 2)))
        mean = tuple(float(v) for v in pre.get("image_mean", (0.5, 0.5, 0.5)))
        std = tuple(float(v) for v in pre.get("image_std", (0.5, 0.5, 0.5)))
        rescale_factor = float(pre.get("rescale_factor", 1 / 255))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable setting ({err})") from None
    if len(margins) != 2 or len(pooling) != 2 or len(mean) != 3 or len(std) != 3:
        raise CheckpointError(f"{path}: overlap_margins and pooling_size need 2 values, image_mean/std 3")
    s = ImageSettings(
        crop_size=crop_size,
        patch_size=patch_size,
        max_crops=max_crops,
        overlap_margins=(margins[0], margins[1]),
        pooling_size=(pooling[0], pooling[1]),
        image_mean=(mean[0], mean[1], mean[2]),
        image_std=(std[0], std[1], std[2]),
        do_rescale=bool(pre.get("do_rescale", True)),
        rescale_factor=rescale_factor,
        do_normalize=bool(pre.get("do_normalize", True)),
        do_convert_rgb=bool(pre.get("do_convert_rgb", True)),
    )
    if s.max_crops < 1:
        raise CheckpointError(f"{path}: max_crops {s.max_crops} must be at least 1")
    if s.patch_size != vision_patch or s.crop_size != vision_size:
        raise CheckpointError(
            f"{path}: crop {s.crop_size}px / patch {s.patch_size} does not match the vision "
            f"model's {vision_size}px / {vision_patch} (the ViT position table needs exact crops)"
        )
    problem = geometry_problem(s.crop_size, s.patch_size, s.overlap_margins, s.pooling_size)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return s


def chat_template(checkpoint: Path) -> str:
    if (checkpoint / "chat_template.jinja").is_file():
        return (checkpoint / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "processor_config.json", "tokenizer_config.json"):
        template = _read_json(checkpoint / name, required=False).get("chat_template")
        if isinstance(template, str):
            return template
    raise CheckpointError(f"{checkpoint}: no chat template (chat_template.jinja or *config.json 'chat_template')")


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def prompt_settings(checkpoint: Path) -> PromptSettings:
    proc = _read_json(checkpoint / "processor_config.json", required=False)
    tok_cfg = _read_json(checkpoint / "tokenizer_config.json")
    bos = _token_text(tok_cfg.get("bos_token")) or _token_text(
        tok_cfg.get("eos_token")
    )  # Molmo2Processor falls back to EOS
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


def read_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (the runtime needs the fast tokenizer file)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # the tokenizers library raises plain Exception for a bad file
        raise CheckpointError(f"{path}: not a tokenizers file ({str(err).splitlines()[0][:200]})") from None


def _reserved_ids(tokenizer: Tokenizer, tok_cfg: dict[str, Any]) -> set[int]:
    """Ids that can never be an answer word: the unknown token, padding, BOS/EOS, every special token."""
    ids = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    model = tokenizer.model
    names = [getattr(model, "unk_token", None)] + [
        _token_text(tok_cfg.get(k)) for k in ("unk_token", "pad_token", "bos_token", "eos_token")
    ]
    ids |= {i for i in (tokenizer.token_to_id(n) for n in names if isinstance(n, str)) if i is not None}
    if isinstance(getattr(model, "unk_id", None), int):
        ids.add(model.unk_id)
    if tokenizer.padding and isinstance(tokenizer.padding.get("pad_id"), int):
        ids.add(tokenizer.padding["pad_id"])
    return ids


def single_token_ids(
    tokenizer: Tokenizer, words: tuple[str, ...], vocab_size: int, reserved: set[int] | None = None
) -> list[int]:
    """Ids of the words that are exactly one real token of the LM head's vocabulary (never the
    unknown token or another reserved id standing in for a word the tokenizer does not have)."""
    reserved = reserved or set()
    ids = set()
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False).ids
        if len(encoded) != 1 or encoded[0] >= vocab_size or encoded[0] in reserved:
            continue
        if tokenizer.decode(encoded, skip_special_tokens=False).strip() != word.strip():
            continue  # the token does not spell the word (an unknown-token fallback)
        ids.add(encoded[0])
    return sorted(ids)


def token_ids(checkpoint: Path, tokenizer: Tokenizer, config: Any, prompt: PromptSettings) -> dict[str, Any]:
    tokenizer_path = checkpoint / "tokenizer.json"
    tok_cfg = _read_json(checkpoint / "tokenizer_config.json")
    gen = _read_json(checkpoint / "generation_config.json", required=False)
    eos = gen.get("eos_token_id")
    if eos is None:
        eos_token = _token_text(tok_cfg.get("eos_token"))
        eos = tokenizer.token_to_id(eos_token) if eos_token else None
    listed = eos if isinstance(eos, list) else [eos]
    eos_ids = [i for i in listed if isinstance(i, int)]
    if not eos_ids or len(eos_ids) != len(listed):
        raise CheckpointError(f"{checkpoint / 'generation_config.json'}: no usable eos_token_id")
    vocab = config.text_config.vocab_size
    reserved = _reserved_ids(tokenizer, tok_cfg) | set(eos_ids)
    yes = single_token_ids(tokenizer, YES_WORDS, vocab, reserved)
    no = single_token_ids(tokenizer, NO_WORDS, vocab, reserved)
    if not yes or not no:
        raise CheckpointError(
            f"{tokenizer_path}: no single-token 'Yes'/'No' words (yes {yes}, no {no}); yes/no scoring needs both"
        )
    bos = tokenizer.token_to_id(prompt.bos_token)
    if bos is None:
        raise CheckpointError(f"{tokenizer_path}: BOS token {prompt.bos_token!r} is not in the vocabulary")
    log.info("yes ids %s, no ids %s (reserved ids excluded: %d)", yes, no, len(reserved))
    return {
        "bos": bos,
        "eos": [int(i) for i in eos_ids],
        "image_patch": int(config.image_patch_id),
        "yes": yes,
        "no": no,
    }


def settings_dict(s: ImageSettings) -> dict[str, Any]:
    d = asdict(s)
    d["resample"] = "bilinear"
    return d


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything read from a checkpoint folder without loading its weights."""

    path: Path
    config: Any
    image: ImageSettings
    prompt: PromptSettings
    tokens: dict[str, Any]
    parameters: int


def inspect_checkpoint(checkpoint: str | Path) -> CheckpointInfo:
    """Every check that needs no weights, cheapest first; CheckpointError at the first problem."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint}: not a folder")
    if not (checkpoint / "config.json").is_file():
        raise CheckpointError(f"{checkpoint / 'config.json'}: missing (not a HuggingFace checkpoint folder)")
    config = load_config(checkpoint)
    vision = config.vision_config
    image = image_settings(checkpoint, vision.patch_size, vision.image_size[0])
    prompt = prompt_settings(checkpoint)
    tokenizer = read_tokenizer(checkpoint / "tokenizer.json")
    tokens = token_ids(checkpoint, tokenizer, config, prompt)
    try:
        parameters = check_weights(checkpoint, config)
    except CheckpointError:
        raise
    except Exception as err:  # the config builds no model (inconsistent sizes): say so in one line
        raise CheckpointError(
            f"{checkpoint / 'config.json'}: does not describe a buildable Molmo2 "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    return CheckpointInfo(checkpoint, config, image, prompt, tokens, parameters)


def load_checkpoint(checkpoint: str | Path, checked: bool = False) -> Any:
    """The model in float32 with eager attention (what the export traces). Runs
    ``inspect_checkpoint`` first unless ``checked``, so nothing is allocated for a bad folder."""
    import torch
    from transformers import Molmo2ForConditionalGeneration

    checkpoint = Path(checkpoint)
    if not checked:
        inspect_checkpoint(checkpoint)
    try:
        model = Molmo2ForConditionalGeneration.from_pretrained(
            checkpoint, attn_implementation="eager", dtype=torch.float32
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{checkpoint}: the weights do not load ({str(err).splitlines()[0][:200]})") from None
    return model.eval()
