"""What the engine hands between its stages: the K/V cache, an encoded frame, the logits after some
tokens, a batch of prompts after one prefill (data only, shared by generate.py and step_decode.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .preprocess import ImageInputs


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
    pooled: np.ndarray | None = None  # [2 × hidden]: features.pool_features of ``features``


@dataclass(frozen=True)
class Step:
    """Logits and cache after feeding some tokens."""

    logits: np.ndarray  # [vocab] float32, next-token logits
    cache: KVCache


@dataclass(frozen=True)
class Batch:
    """Several prompts about one image after one batched prefill; row b is prompt b."""

    logits: np.ndarray  # [B, vocab] next-token logits of each row
    keys: tuple[np.ndarray, ...]  # per layer [B, kv_heads, T, head_dim]
    values: tuple[np.ndarray, ...]
    attend: np.ndarray  # [B, T] bool: the cached positions each row may attend to (False = padding)
    positions: np.ndarray  # [B] int64: position id of each row's next token

    @property
    def size(self) -> int:
        return int(self.logits.shape[0])

    @classmethod
    def from_step(cls, step: Step) -> Batch:
        n = step.cache.length
        return cls(
            logits=step.logits[None],
            keys=step.cache.keys,
            values=step.cache.values,
            attend=np.ones((1, n), dtype=bool),
            positions=np.array([n], dtype=np.int64),
        )
