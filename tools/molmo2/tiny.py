"""A small random Molmo2 checkpoint with a locally made tokenizer, laid out like a hub release.

Used by the tests and the example run: no weights can be downloaded here, so the toolchain is
exercised end to end on a model that has the real architecture at a small size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Molmo2Config, Molmo2ForConditionalGeneration, PreTrainedTokenizerFast

TEXT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
IMAGE_SPECIALS = [
    "<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<low_res_im_start>",
    "<frame_start>", "<frame_end>", "<im_low>", "<|image|>", "<|video|>",
]  # fmt: skip

# Molmo2-style chat template: BOS, the image, then the user turn and the assistant header.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is not string %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|image|>{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "Point to any scratches.", "Point to the screws.", "Point to the dents.", "Point to any spots.",
    "Is the label present?", "Is the label straight?", "Is the part clean?", "How many screws are there?",
    "Yes.", "No.", "Yes", "No", "yes", "no", "There are none.",
    'Counting the <points coords="1 1 412 630 2 505 611">screw</points> shows a total of 2.',
    '<point x="61.5" y="40.0" alt="scratch">scratch</point>', "0 1 2 3 4 5 6 7 8 9",
    "scratch scratches screw screws dent dents spot spots label plate part hole holes",
]  # fmt: skip


def make_tokenizer(vocab_size: int = 320, corpus: list[str] | None = None) -> tuple[Tokenizer, int]:
    """Byte-level BPE with single-digit tokens (as Qwen); image tokens after the text vocabulary.

    Returns the tokenizer and the text vocabulary size (the LM head's width)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=TEXT_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((_CORPUS + (corpus or [])) * 4, trainer=trainer)
    text_vocab = tok.get_vocab_size()
    tok.add_special_tokens(IMAGE_SPECIALS)
    return tok, text_vocab


def special_id(tok: Tokenizer, token: str) -> int:
    """The id of a special token that ``make_tokenizer`` adds (ValueError for any other text)."""
    token_id = tok.token_to_id(token)
    if token_id is None:
        raise ValueError(f"{token!r} is not in the tokenizer's vocabulary")
    return token_id


def fan_in_init(model: torch.nn.Module, seed: int = 0) -> None:
    """Re-initialize with 1/sqrt(fan_in) scaling: HF's std-0.02 default makes image features ~0 in small models."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("positional_embedding"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
            elif param.dim() == 2 and "embed_tokens" in name:
                param.copy_(torch.randn(param.shape, generator=gen))
            elif param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) / math.sqrt(param.shape[1]))
            elif name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
            elif "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))


# Model sizes: "tiny" for tests (0.2 M parameters), "small" for benchmarks (a few million).
@dataclass(frozen=True)
class Preset:
    """A model size: crop side, crops, overlap margins, vit (hidden, mlp, layers, heads), text (hidden,
    mlp, layers, heads, kv heads)."""

    crop: int
    max_crops: int
    margins: tuple[int, int]
    vit: tuple[int, int, int, int]
    text: tuple[int, int, int, int, int]


SIZES = {
    "tiny": Preset(crop=112, max_crops=4, margins=(2, 2), vit=(32, 64, 3, 2), text=(64, 128, 2, 4, 2)),
    "small": Preset(crop=224, max_crops=6, margins=(2, 2), vit=(128, 512, 4, 4), text=(256, 768, 4, 8, 4)),
}


def tiny_config(text_vocab: int, image_ids: dict[str, int], size: str = "tiny") -> Molmo2Config:
    preset = SIZES[size]
    vit_hidden, vit_mlp, vit_layers, vit_heads = preset.vit
    hidden, mlp, layers, heads, kv_heads = preset.text
    crop = preset.crop
    return Molmo2Config(
        vision_config=dict(
            hidden_size=vit_hidden, intermediate_size=vit_mlp, num_hidden_layers=vit_layers,
            num_attention_heads=vit_heads, num_key_value_heads=vit_heads, head_dim=16,
            image_size=[crop, crop], patch_size=14,
        ),
        adapter_config=dict(
            vision_feature_layer=[-1, -2], hidden_size=vit_hidden, num_attention_heads=vit_heads,
            num_key_value_heads=vit_heads, head_dim=16, intermediate_size=vit_mlp, text_hidden_size=hidden,
        ),
        text_config=dict(
            hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
            vocab_size=text_vocab, additional_vocab_size=len(IMAGE_SPECIALS), num_hidden_layers=layers,
            intermediate_size=mlp, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            max_position_embeddings=4096, qk_norm_type="qwen3",
        ),
        image_start_token_id=image_ids["<im_start>"],
        low_res_image_start_token_id=image_ids["<low_res_im_start>"],
        image_end_token_id=image_ids["<im_end>"],
        image_patch_id=image_ids["<im_patch>"],
        frame_start_token_id=image_ids["<frame_start>"],
        frame_end_token_id=image_ids["<frame_end>"],
    )  # fmt: skip


def _legacy_config(config: dict) -> dict:
    """Rewrite a saved config.json with the key names the released Molmo2 checkpoints use."""
    vision = config.pop("vision_config")
    vision["image_default_input_size"] = vision.pop("image_size")
    vision["image_patch_size"] = vision.pop("patch_size")
    vision["image_num_pos"] = vision.pop("num_position_embeddings")
    config["vit_config"] = vision
    config["adapter_config"]["vit_layers"] = config["adapter_config"].pop("vision_feature_layer")
    return config


def write_checkpoint(
    model: Molmo2ForConditionalGeneration,
    tok: Tokenizer,
    out: str | Path,
    max_crops: int,
    overlap_margins: tuple[int, int],
    legacy_keys: bool = True,
) -> Path:
    """Save model, tokenizer, chat template and processor configs as a hub release lays them out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crop_size = model.config.vision_config.image_size[0]
    model.generation_config.eos_token_id = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    model.generation_config.bos_token_id = tok.token_to_id("<|endoftext|>")
    model.save_pretrained(out)
    if legacy_keys:
        config_path = out / "config.json"
        config_path.write_text(json.dumps(_legacy_config(json.loads(config_path.read_text())), indent=2))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Molmo2ImageProcessor",
        "size": {"height": crop_size, "width": crop_size}, "max_crops": max_crops,
        "overlap_margins": list(overlap_margins), "patch_size": 14, "pooling_size": [2, 2],
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_resize": True, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True, "resample": 2,
    }, indent=2))  # fmt: skip
    (out / "processor_config.json").write_text(json.dumps({
        "processor_class": "Molmo2Processor", "image_use_col_tokens": True,
        "use_single_crop_col_tokens": False, "use_single_crop_start_token": True,
    }, indent=2))  # fmt: skip
    return out


def make_tiny_checkpoint(
    out: str | Path, seed: int = 0, size: str = "tiny", max_crops: int | None = None, legacy_keys: bool = True
) -> Path:
    """Write a random Molmo2 checkpoint folder (config, weights, tokenizer, processor configs)."""
    torch.manual_seed(seed)
    tok, text_vocab = make_tokenizer()
    image_ids = {t: special_id(tok, t) for t in IMAGE_SPECIALS}
    preset = SIZES[size]
    model = Molmo2ForConditionalGeneration(tiny_config(text_vocab, image_ids, size)).eval()
    fan_in_init(model, seed)
    return write_checkpoint(model, tok, out, max_crops or preset.max_crops, preset.margins, legacy_keys)
