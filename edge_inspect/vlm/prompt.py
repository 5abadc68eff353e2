"""Chat template → text → token ids, with the Molmo2 image-token layout.

The layout follows transformers' ``Molmo2Processor.replace_image_token``: a low-resolution block
(``<low_res_im_start>`` rows of ``<im_patch>`` [+ ``<im_col>``] ``<im_end>``) followed by the
high-resolution block (``<im_start>`` … ``<im_end>``). The chat template is the checkpoint's own
Jinja template, rendered the way transformers renders it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

# Tokens that make up an image in the prompt; they attend to each other bidirectionally.
IMAGE_STRUCTURE_TOKENS = (
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
)


@dataclass(frozen=True)
class PromptSettings:
    chat_template: str
    bos_token: str
    image_placeholder: str = "<|image|>"
    image_use_col_tokens: bool = True
    use_single_crop_col_tokens: bool | None = None
    use_single_crop_start_token: bool = True


def image_token_text(grid: tuple[int, int, int, int], s: PromptSettings) -> str:
    """The special-token string that stands for one image with pooled grid (low_h, low_w, high_h, high_w)."""
    low_h, low_w, high_h, high_w = grid
    row = "<im_patch>" * high_w + ("<im_col>" if s.image_use_col_tokens else "")
    high = "<im_start>" + row * high_h + "<im_end>"
    low_cols = s.image_use_col_tokens if s.use_single_crop_col_tokens is None else s.use_single_crop_col_tokens
    row = "<im_patch>" * low_w + ("<im_col>" if low_cols else "")
    start = "<low_res_im_start>" if s.use_single_crop_start_token else "<im_start>"
    return start + row * low_h + "<im_end>" + high


def _raise(message: str) -> None:
    raise ValueError(message)


class ChatTemplate:
    """Renders the checkpoint's chat template for one image and one question."""

    def __init__(self, s: PromptSettings):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = _raise
        self.settings = s
        self._template = env.from_string(s.chat_template)

    def render(self, question: str) -> str:
        """Prompt text for one image and one question, BOS first, image placeholder included."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = self._template.render(messages=messages, add_generation_prompt=True, bos_token=self.settings.bos_token)
        if not text.startswith(self.settings.bos_token):
            text = self.settings.bos_token + text  # as Molmo2Processor does
        if text.count(self.settings.image_placeholder) != 1:
            raise ValueError(f"chat template must place exactly one {self.settings.image_placeholder} for one image")
        return text


@dataclass(frozen=True)
class PromptIds:
    """Token ids of a full prompt, split where the image ends."""

    ids: np.ndarray  # [n] int64
    image_end: int  # ids[:image_end] is BOS + template text + image tokens


BUILT_CACHE = 256


class PromptBuilder:
    """Question + image grid → token ids. Knows which tokens are image structure."""

    def __init__(self, tokenizer: Tokenizer, s: PromptSettings):
        self.tokenizer = tokenizer
        self.settings = s
        self.template = ChatTemplate(s)
        ids = [tokenizer.token_to_id(t) for t in IMAGE_STRUCTURE_TOKENS]
        self.image_structure_ids = np.array(sorted(i for i in ids if i is not None), dtype=np.int64)
        self._built: dict[tuple[str, tuple[int, ...]], PromptIds] = {}

    def encode_text(self, text: str) -> np.ndarray:
        return np.array(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def build(self, question: str, grid: tuple[int, int, int, int]) -> PromptIds:
        """The prompt's ids (read-only); a station asks the same few questions about frames of one
        size, so results are kept (up to BUILT_CACHE of them) instead of tokenized every time."""
        key = (question, tuple(grid))
        built = self._built.get(key)
        if built is None:
            text = self.template.render(question)
            before, after = text.split(self.settings.image_placeholder)
            prefix = self.encode_text(before + image_token_text(grid, self.settings))
            ids = np.concatenate([prefix, self.encode_text(after)])
            ids.flags.writeable = False
            built = PromptIds(ids=ids, image_end=len(prefix))
            if len(self._built) >= BUILT_CACHE:
                self._built.clear()
            self._built[key] = built
        return built

    @cached_property
    def reusable_prefix(self) -> bool:
        """True when the text before the image does not depend on the question (so its KV is reusable)."""
        a = self.template.render("a").split(self.settings.image_placeholder)[0]
        b = self.template.render("Is it b?").split(self.settings.image_placeholder)[0]
        return a == b

    def image_mask(self, ids: np.ndarray) -> np.ndarray:
        """mm_token_type_ids == 1: the tokens of the prefix-LM image block."""
        return np.isin(ids, self.image_structure_ids)
