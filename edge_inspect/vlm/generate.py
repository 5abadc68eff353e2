"""Prefill with the prefix-LM mask, KV cache, greedy decoding and yes/no scoring.

The decoder graph takes ``inputs_embeds``, an additive ``attention_mask`` [1, 1, S, P+S],
``position_ids`` and the past K/V of every layer, and returns the last token's logits with the
present K/V. One graph serves the prefill (empty past) and every decode step.

Prefix-LM: during prefill, image-structure tokens attend to each other in both directions
(transformers' ``mm_token_type_ids``); every other token is causal. The image comes right after
BOS in the Molmo2 template, so the K/V of BOS + image tokens does not depend on the question and
is computed once per image (``encode_image``) and reused for every prompt — exactly, not as an
approximation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .bundle import Bundle
from .preprocess import ImageInputs
from .prompt import PromptBuilder, PromptIds


@dataclass(frozen=True)
class KVCache:
    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    image_flags: np.ndarray  # [length] bool: which cached positions are image-structure tokens

    @property
    def length(self) -> int:
        return int(self.image_flags.shape[0])


@dataclass
class EncodedImage:
    """One frame, ready for any number of prompts."""

    inputs: ImageInputs
    features: np.ndarray  # [n_image_tokens, hidden] from the vision graph
    prefix_ids: np.ndarray | None  # BOS + template text + image tokens, when that prefix is reusable
    prefix_kv: KVCache | None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """Logits and cache after feeding some tokens."""

    logits: np.ndarray  # [vocab] float32, next-token logits
    cache: KVCache


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Engine:
    """Runs the three graphs of a bundle; no knowledge of stations or checks."""

    def __init__(self, bundle: Bundle, backend: Backend, prompts: PromptBuilder):
        self.bundle = bundle
        self.backend = backend
        self.prompts = prompts
        self.num_layers = bundle.text.num_layers
        decoder_precision = bundle.precision("decoder")
        # fp16 graphs overflow with finfo(float32).min; -1e4 is far enough for softmax.
        self.mask_value = np.float32(-1e4 if decoder_precision == "fp16" else np.finfo(np.float32).min)
        t = bundle.text
        self._empty = np.zeros((1, t.num_kv_heads, 0, t.head_dim), dtype=np.float32)

    # -- building blocks -------------------------------------------------------------------
    def empty_cache(self) -> KVCache:
        empty = (self._empty,) * self.num_layers
        return KVCache(keys=empty, values=empty, image_flags=np.zeros(0, dtype=bool))

    def vision(self, inputs: ImageInputs) -> np.ndarray:
        if np.any(np.all(inputs.pooling < 0, axis=1)):
            raise ValueError("pooling indices contain a token with no patch; preprocessing settings are inconsistent")
        out = self.backend.run("vision", {"pixel_values": inputs.pixel_values, "pooling": inputs.pooling})
        return out["image_features"]

    def embed(self, ids: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Token embeddings, with image features added onto the ``<im_patch>`` positions."""
        ids2 = ids.reshape(1, -1).astype(np.int64)
        image_embeds = np.zeros((1, ids2.shape[1], self.bundle.text.hidden_size), dtype=np.float32)
        patch_positions = np.flatnonzero(ids2[0] == self.bundle.tokens.image_patch)
        if features is not None or len(patch_positions):
            n_features = 0 if features is None else features.shape[0]
            if n_features != len(patch_positions):
                raise ValueError(f"prompt has {len(patch_positions)} image patch tokens but the image gave {n_features} features")
            image_embeds[0, patch_positions] = features
        return self.backend.run("embed", {"input_ids": ids2, "image_embeds": image_embeds})["inputs_embeds"]

    def attention_mask(self, past: KVCache, chunk_flags: np.ndarray, prefix_lm: bool = True) -> np.ndarray:
        """Additive mask [1, 1, S, P+S]: causal, plus image×image when ``prefix_lm``."""
        p, s = past.length, len(chunk_flags)
        rows = np.arange(s)[:, None] + p
        cols = np.arange(p + s)[None, :]
        allowed = cols <= rows
        if prefix_lm:
            all_flags = np.concatenate([past.image_flags, chunk_flags])
            allowed |= chunk_flags[:, None] & all_flags[None, :]
        mask = np.where(allowed, np.float32(0.0), self.mask_value).astype(np.float32)
        return mask[None, None]

    def forward(self, embeds: np.ndarray, flags: np.ndarray, past: KVCache, prefix_lm: bool = True) -> Step:
        """Feed a chunk of embedded tokens after ``past``."""
        p, s = past.length, embeds.shape[1]
        if p + s > self.bundle.text.max_positions:
            raise ValueError(f"sequence of {p + s} tokens exceeds the model's {self.bundle.text.max_positions} positions")
        feeds = {
            "inputs_embeds": embeds,
            "attention_mask": self.attention_mask(past, flags, prefix_lm),
            "position_ids": np.arange(p, p + s, dtype=np.int64)[None],
        }
        for i in range(self.num_layers):
            feeds[f"past_key_{i}"] = past.keys[i]
            feeds[f"past_value_{i}"] = past.values[i]
        out = self.backend.run("decoder", feeds)
        cache = KVCache(
            keys=tuple(out[f"present_key_{i}"] for i in range(self.num_layers)),
            values=tuple(out[f"present_value_{i}"] for i in range(self.num_layers)),
            image_flags=np.concatenate([past.image_flags, flags]),
        )
        return Step(logits=out["logits"][0], cache=cache)

    def feed(self, ids: np.ndarray, past: KVCache, features: np.ndarray | None = None, prefix_lm: bool = True) -> Step:
        return self.forward(self.embed(ids, features), self.prompts.image_mask(ids), past, prefix_lm)

    # -- images and prompts ----------------------------------------------------------------
    def encode_image(self, inputs: ImageInputs, reuse_prefix: bool = True) -> EncodedImage:
        start = time.perf_counter()
        features = self.vision(inputs)
        timings = {"vision_ms": _ms(start)}
        encoded = EncodedImage(inputs=inputs, features=features, prefix_ids=None, prefix_kv=None, timings_ms=timings)
        if reuse_prefix and self.prompts.reusable_prefix:
            start = time.perf_counter()
            prompt = self.prompts.build("", inputs.grid)
            encoded.prefix_ids = prompt.ids[: prompt.image_end]
            encoded.prefix_kv = self.feed(encoded.prefix_ids, self.empty_cache(), features).cache
            timings["image_prefill_ms"] = _ms(start)
        return encoded

    def prefill(self, image: EncodedImage, question: str, prefix_lm: bool = True) -> tuple[Step, PromptIds]:
        """Next-token logits after the full prompt for ``question`` about ``image``."""
        prompt = self.prompts.build(question, image.inputs.grid)
        head = prompt.ids[: prompt.image_end]
        if image.prefix_kv is not None and prefix_lm and np.array_equal(head, image.prefix_ids):
            return self.feed(prompt.ids[prompt.image_end :], image.prefix_kv), prompt
        return self.feed(prompt.ids, self.empty_cache(), image.features, prefix_lm), prompt

    def greedy(self, step: Step, max_new_tokens: int, stop_ids: tuple[int, ...] | None = None) -> tuple[list[int], list[np.ndarray]]:
        """Greedy decoding from ``step``; returns the new token ids and the logits that chose each one."""
        stop = set(self.bundle.tokens.eos if stop_ids is None else stop_ids)
        tokens: list[int] = []
        logits: list[np.ndarray] = []
        while len(tokens) < max_new_tokens:
            token = int(np.argmax(step.logits))
            tokens.append(token)
            logits.append(step.logits)
            if token in stop or len(tokens) == max_new_tokens:
                break
            step = self.feed(np.array([token], dtype=np.int64), step.cache)
        return tokens, logits

    def yes_no(self, logits: np.ndarray) -> tuple[float, float]:
        """P(yes | yes or no) and the total probability mass on yes/no answers, from one set of logits."""
        z = logits.astype(np.float64)
        z = z - z.max()
        probs = np.exp(z) / np.exp(z).sum()
        p_yes = float(probs[list(self.bundle.tokens.yes)].sum())
        p_no = float(probs[list(self.bundle.tokens.no)].sum())
        mass = p_yes + p_no
        return (p_yes / mass if mass > 0 else 0.5), mass
