"""The student: a small Molmo2ForConditionalGeneration with a tokenizer sized for the station's answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import Molmo2Config, Molmo2ForConditionalGeneration

from edge_inspect.vlm.preprocess import ImageSettings
from edge_inspect.vlm.prompt import PromptBuilder, PromptSettings
from tools.molmo2.tiny import (
    CHAT_TEMPLATE,
    IMAGE_SPECIALS,
    fan_in_init,
    make_tokenizer,
    special_id,
    write_checkpoint,
)

from .tasks import PHRASINGS, POINT_LABELS


@dataclass(frozen=True)
class StudentShape:
    crop: int = 224
    max_crops: int = 1
    margins: tuple[int, int] = (2, 2)
    vit_hidden: int = 128
    vit_layers: int = 4
    vit_heads: int = 4
    vit_mlp: int = 512
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 8
    text_kv_heads: int = 4
    text_mlp: int = 768
    vocab: int = 384


SHAPES = {
    "demo": StudentShape(),
    "test": StudentShape(
        crop=112,
        vit_hidden=32,
        vit_layers=2,
        vit_heads=2,
        vit_mlp=64,
        text_hidden=64,
        text_layers=2,
        text_heads=4,
        text_kv_heads=2,
        text_mlp=128,
    ),
}


def student_corpus() -> list[str]:
    corpus = [prompt for prompts in PHRASINGS.values() for prompt in prompts]
    for label in POINT_LABELS.values():
        corpus.append(f'<points coords="1 1 100 200 2 300 400">{label}</points>')
    return corpus


def build_student(shape: StudentShape, seed: int = 0) -> tuple[Molmo2ForConditionalGeneration, Tokenizer]:
    torch.manual_seed(seed)
    tok, text_vocab = make_tokenizer(shape.vocab, student_corpus())
    ids = {t: special_id(tok, t) for t in IMAGE_SPECIALS}
    config = Molmo2Config(
        vision_config=dict(
            hidden_size=shape.vit_hidden, intermediate_size=shape.vit_mlp, num_hidden_layers=shape.vit_layers,
            num_attention_heads=shape.vit_heads, num_key_value_heads=shape.vit_heads,
            head_dim=shape.vit_hidden // shape.vit_heads, image_size=[shape.crop, shape.crop], patch_size=14,
        ),
        adapter_config=dict(
            vision_feature_layer=[-1, -2], hidden_size=shape.vit_hidden, num_attention_heads=shape.vit_heads,
            num_key_value_heads=shape.vit_heads, head_dim=shape.vit_hidden // shape.vit_heads,
            intermediate_size=shape.vit_mlp, text_hidden_size=shape.text_hidden,
        ),
        text_config=dict(
            hidden_size=shape.text_hidden, num_attention_heads=shape.text_heads,
            num_key_value_heads=shape.text_kv_heads, head_dim=shape.text_hidden // shape.text_heads,
            vocab_size=text_vocab, additional_vocab_size=len(IMAGE_SPECIALS), num_hidden_layers=shape.text_layers,
            intermediate_size=shape.text_mlp, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            max_position_embeddings=2048, qk_norm_type="qwen3",
        ),
        image_start_token_id=ids["<im_start>"], low_res_image_start_token_id=ids["<low_res_im_start>"],
        image_end_token_id=ids["<im_end>"], image_patch_id=ids["<im_patch>"],
        frame_start_token_id=ids["<frame_start>"], frame_end_token_id=ids["<frame_end>"],
    )  # fmt: skip
    model = Molmo2ForConditionalGeneration(config)
    model.config._attn_implementation = "sdpa"
    fan_in_init(model, seed)
    return model, tok


def image_settings(shape: StudentShape) -> ImageSettings:
    return ImageSettings(crop_size=shape.crop, max_crops=shape.max_crops, overlap_margins=shape.margins)


def prompt_builder(tok: Tokenizer) -> PromptBuilder:
    return PromptBuilder(
        tok, PromptSettings(chat_template=CHAT_TEMPLATE, bos_token="<|endoftext|>", use_single_crop_col_tokens=False)
    )


def save_student(model: Molmo2ForConditionalGeneration, tok: Tokenizer, shape: StudentShape, out: Path) -> Path:
    return write_checkpoint(model, tok, out, shape.max_crops, shape.margins)
