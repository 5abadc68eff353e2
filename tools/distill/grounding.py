"""Auxiliary grounding targets for training: what each image token covers.

Training from scratch, a small student learns to answer and to find screws at fixed places long
before it learns to point at defects that can be anywhere, and it learns the yes/no label question
late. Dense per-token targets teach the vision tower and adapter to mark what matters and where it
is, which the language model then reads out as point coordinates or as an answer:

- presence: is there a defect / a screw / the label under this token (mask overlap);
- centre: does a defect's / a screw's point (where the answer should point) fall in this token;
- position: where this token is, and where the object point inside it is — finer than the token
  grid, because a pooled token spans 40 × 30 px of a 320 × 240 frame while a scratch's mask
  (dilated by 3 px) is about 9 px wide;
- digits (optional): the hundreds and tens digits of that point's x and y in Molmo2's 0–1000 point
  scale. A student answers coordinates digit by digit; without this it learns the hundreds digit
  from the image and a fixed guess for the tens, about 30 px off in x. Features that carry the
  digits themselves leave the language model a copy to learn.

The head that predicts them is used in training only; the student keeps the plain Molmo2
architecture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from edge_inspect.vlm.preprocess import ImageSettings, crop_geometry

PRESENCE = ("defect", "screw", "label")  # region masks
CENTRES = ("defect", "screw")  # object points
# Column layout: presence…, centre…, token centre (x, y), object point (x, y) — all as image fractions.
COLUMNS = len(PRESENCE) + len(CENTRES) + 4


def _view_targets(
    masks: dict[str, np.ndarray],
    points: dict[str, list[tuple[float, float]]],
    patches_h: int,
    patches_w: int,
    pool: tuple[int, int],
) -> np.ndarray:
    pool_h, pool_w = pool
    pad_h = pool_h * math.ceil(patches_h / pool_h) - patches_h
    pad_w = pool_w * math.ceil(patches_w / pool_w) - patches_w
    top, left = pad_h // 2, pad_w // 2
    rows, cols = (patches_h + pad_h) // pool_h, (patches_w + pad_w) // pool_w
    columns = []
    for name in PRESENCE:
        patch = cv2.resize(masks[name].astype(np.float32), (patches_w, patches_h), interpolation=cv2.INTER_AREA) > 0.02
        padded = np.pad(patch, ((top, pad_h - top), (left, pad_w - left)))
        columns.append(padded.reshape(rows, pool_h, cols, pool_w).any(axis=(1, 3)).reshape(-1))
    r, c = np.mgrid[0:rows, 0:cols]
    cy = np.clip((r * pool_h + pool_h / 2 - top) / patches_h, 0, 1).reshape(-1)
    cx = np.clip((c * pool_w + pool_w / 2 - left) / patches_w, 0, 1).reshape(-1)
    point_x, point_y = cx.copy(), cy.copy()
    best = np.full(rows * cols, np.inf)  # a token holding two points keeps the one nearest its centre
    for name in CENTRES:
        centre = np.zeros(rows * cols, bool)
        for x, y in points.get(name, []):
            row = min(rows - 1, max(0, int((y * patches_h + top) // pool_h)))
            col = min(cols - 1, max(0, int((x * patches_w + left) // pool_w)))
            k = row * cols + col
            centre[k] = True
            distance = (x - cx[k]) ** 2 + (y - cy[k]) ** 2
            if distance < best[k]:
                best[k], point_x[k], point_y[k] = distance, x, y
        columns.append(centre)
    return np.stack([*columns, cx, cy, point_x, point_y], axis=1).astype(np.float32)


def token_targets(
    masks: dict[str, np.ndarray],
    points: dict[str, list[tuple[float, float]]],
    image_hw: tuple[int, int],
    s: ImageSettings,
) -> np.ndarray:
    """[tokens, COLUMNS] for every image token in the order the vision graph emits them: global view,
    then canvas. ``masks`` holds a union mask per PRESENCE name, ``points`` normalized points per CENTRES name."""
    _, _, canvas_h, canvas_w = crop_geometry(image_hw[0], image_hw[1], s)
    low = _view_targets(masks, points, s.crop_patches, s.crop_patches, s.pooling_size)
    high = _view_targets(masks, points, canvas_h // s.patch_size, canvas_w // s.patch_size, s.pooling_size)
    return np.concatenate([low, high])


def point_digits(points: torch.Tensor) -> torch.Tensor:
    """[N, 2] normalized points → [N, 4] digit classes: x hundreds, x tens, y hundreds, y tens (0–1000 scale)."""
    value = (points * 1000).round().clamp(0, 999).long()
    return torch.stack([value[:, 0] // 100, value[:, 0] // 10 % 10, value[:, 1] // 100, value[:, 1] // 10 % 10], -1)


class GroundingHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.proj = nn.Linear(hidden, COLUMNS)
        self.digits = nn.Linear(hidden, 4 * 10)

    def loss(
        self, features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, digits: float = 0.0
    ) -> torch.Tensor:
        """``digits`` weighs the digit targets (0 = off); tokens holding an object point count 5× more."""
        features = features.float()
        out = self.proj(features)
        flags = len(PRESENCE) + len(CENTRES)
        presence = nn.functional.binary_cross_entropy_with_logits(out[:, :flags], targets[:, :flags], reduction="none")
        where = (out[:, flags : flags + 2] - targets[:, flags : flags + 2]) ** 2
        has_point = targets[:, len(PRESENCE) : flags].amax(-1)
        point = (out[:, flags + 2 :] - targets[:, flags + 2 :]).abs().sum(-1) * has_point
        per_token = presence.sum(-1) + 10.0 * where.sum(-1) + 20.0 * point
        if digits:
            logits = self.digits(features).view(-1, 4, 10)
            classes = point_digits(targets[:, flags + 2 :])
            ce = nn.functional.cross_entropy(logits.reshape(-1, 10), classes.reshape(-1), reduction="none")
            per_token = per_token + digits * ce.view(-1, 4).sum(-1) * (0.2 + has_point)
        return (per_token * weight).sum() / weight.sum().clamp(min=1.0)
