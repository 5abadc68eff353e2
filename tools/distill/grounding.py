"""Auxiliary grounding targets for training: what each image token covers.

Training from scratch, a small student learns to answer and to find screws at fixed places long
before it learns to point at defects that can be anywhere. Dense per-token targets — is there a
defect / a screw under this token, and where is this token — teach the vision tower and adapter
to mark defects and to carry their own position, which the language model then reads out as
point coordinates. The head that predicts them is used in training only; the student keeps the
plain Molmo2 architecture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from edge_inspect.vlm.preprocess import ImageSettings, crop_geometry

TARGETS = ("defect", "screw")


def _view_targets(masks: dict[str, np.ndarray], patches_h: int, patches_w: int, pool: tuple[int, int]) -> np.ndarray:
    """[tokens, len(TARGETS) + 2]: presence per target, then the token centre (x, y) as image fractions."""
    pool_h, pool_w = pool
    pad_h = pool_h * math.ceil(patches_h / pool_h) - patches_h
    pad_w = pool_w * math.ceil(patches_w / pool_w) - patches_w
    top, left = pad_h // 2, pad_w // 2
    rows, cols = (patches_h + pad_h) // pool_h, (patches_w + pad_w) // pool_w
    columns = []
    for name in TARGETS:
        patch = cv2.resize(masks[name].astype(np.float32), (patches_w, patches_h), interpolation=cv2.INTER_AREA) > 0.02
        padded = np.pad(patch, ((top, pad_h - top), (left, pad_w - left)))
        columns.append(padded.reshape(rows, pool_h, cols, pool_w).any(axis=(1, 3)).reshape(-1))
    r, c = np.mgrid[0:rows, 0:cols]
    cy = np.clip((r * pool_h + pool_h / 2 - top) / patches_h, 0, 1).reshape(-1)
    cx = np.clip((c * pool_w + pool_w / 2 - left) / patches_w, 0, 1).reshape(-1)
    return np.stack([*columns, cx, cy], axis=1).astype(np.float32)


def token_targets(masks: dict[str, np.ndarray], image_hw: tuple[int, int], s: ImageSettings) -> np.ndarray:
    """Targets for every image token in the order the vision graph emits them: global view, then canvas."""
    _, _, canvas_h, canvas_w = crop_geometry(image_hw[0], image_hw[1], s)
    low = _view_targets(masks, s.crop_patches, s.crop_patches, s.pooling_size)
    high = _view_targets(masks, canvas_h // s.patch_size, canvas_w // s.patch_size, s.pooling_size)
    return np.concatenate([low, high])


class GroundingHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.proj = nn.Linear(hidden, len(TARGETS) + 2)

    def loss(self, features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        out = self.proj(features.float())
        n = len(TARGETS)
        presence = nn.functional.binary_cross_entropy_with_logits(out[:, :n], targets[:, :n], reduction="none")
        position = (out[:, n:] - targets[:, n:]) ** 2
        per_token = presence.sum(-1) + 10.0 * position.sum(-1)
        return (per_token * weight).sum() / weight.sum().clamp(min=1.0)
