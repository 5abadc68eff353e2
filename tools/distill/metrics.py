"""Pointing, counting and yes/no metrics (PixMo-Points rules for pointing)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class PointScore:
    predictions: int
    objects: int
    hits: int

    @property
    def precision(self) -> float:
        if self.predictions == 0:
            return 1.0 if self.objects == 0 else 0.0
        return self.hits / self.predictions

    @property
    def recall(self) -> float:
        if self.objects == 0:
            return 1.0 if self.predictions == 0 else 0.0
        return self.hits / self.objects

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def score_points(predicted: list[tuple[float, float]], truth: list[tuple[float, float]], masks: list[np.ndarray],
                 dilate_px: int = 3) -> PointScore:
    """Hungarian-match predicted to true points by pixel distance; a match is a hit if it lies in
    that object's mask (dilated by ``dilate_px`` so a thin scratch can be hit). Points are normalized."""
    if not predicted or not truth:
        return PointScore(len(predicted), len(truth), 0)
    h, w = masks[0].shape
    pred = np.array([(x * w, y * h) for x, y in predicted])
    true = np.array([(x * w, y * h) for x, y in truth])
    cost = np.linalg.norm(pred[:, None, :] - true[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    kernel = np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8) if dilate_px else None
    hits = 0
    for r, c in zip(rows, cols, strict=True):
        mask = masks[c].astype(np.uint8)
        if kernel is not None:
            mask = cv2.dilate(mask, kernel)
        x, y = int(min(w - 1, max(0, round(pred[r, 0])))), int(min(h - 1, max(0, round(pred[r, 1]))))
        hits += int(mask[y, x] > 0)
    return PointScore(len(predicted), len(truth), hits)


def summarize(scores: list[PointScore]) -> dict[str, float]:
    """Mean per-image precision, recall and F1."""
    if not scores:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "images": 0}
    return {
        "precision": float(np.mean([s.precision for s in scores])),
        "recall": float(np.mean([s.recall for s in scores])),
        "f1": float(np.mean([s.f1 for s in scores])),
        "images": len(scores),
    }
