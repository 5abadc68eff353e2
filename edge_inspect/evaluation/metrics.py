"""Pointing, counting and yes/no metrics (PixMo-Points rules for pointing).

Per image (``PointScore``) and over all objects (``micro``: hits, predictions and objects summed
over the images, with a bootstrap interval over images in ``bootstrap_micro``). A record without
masks (a reviewed frame: QA clicked points, nobody drew outlines) counts a matched point as a hit
within ``RADIUS`` of its true point, the distance at which a reviewer's click names a model point."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .assignment import linear_sum_assignment

RADIUS = 0.03  # fractions of the frame, as logbook/corrections.py matches a reviewer's click to a point


@dataclass(frozen=True)
class Match:
    """One Hungarian pair: predicted point ``prediction`` ↔ true object ``obj``."""

    prediction: int
    obj: int
    distance_px: float  # from the predicted point to the object's point
    hit: bool  # inside the object's (dilated) mask


@dataclass(frozen=True)
class PointScore:
    predictions: int
    objects: int
    hits: int
    matches: tuple[Match, ...] = field(default=(), compare=False)

    def hit_objects(self) -> set[int]:
        return {m.obj for m in self.matches if m.hit}

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


def score_points(
    predicted: list[tuple[float, float]],
    truth: list[tuple[float, float]],
    masks: list[np.ndarray],
    dilate_px: int = 3,
    size: tuple[int, int] | None = None,
) -> PointScore:
    """Hungarian-match predicted to true points by pixel distance; a match is a hit if it lies in
    that object's mask (dilated by ``dilate_px`` so a thin scratch can be hit). Points are normalized.
    Without masks (``size``: the frame's height and width) a match is a hit within ``RADIUS`` of the
    true point (in fractions of the frame)."""
    if not predicted or not truth:
        return PointScore(len(predicted), len(truth), 0)
    if not masks:
        if size is None:
            raise ValueError("score_points: records without masks need the frame's size")
        return _score_by_distance(predicted, truth, size)
    h, w = masks[0].shape
    pred = np.array([(x * w, y * h) for x, y in predicted])
    true = np.array([(x * w, y * h) for x, y in truth])
    cost = np.linalg.norm(pred[:, None, :] - true[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    matches = []
    for r, c in zip(rows, cols, strict=True):
        x, y = int(min(w - 1, max(0, round(pred[r, 0])))), int(min(h - 1, max(0, round(pred[r, 1]))))
        matches.append(Match(int(r), int(c), float(cost[r, c]), bool(dilated(masks[c], dilate_px)[y, x])))
    return PointScore(len(predicted), len(truth), sum(m.hit for m in matches), tuple(matches))


def _score_by_distance(
    predicted: list[tuple[float, float]], truth: list[tuple[float, float]], size: tuple[int, int]
) -> PointScore:
    h, w = size
    pred = np.array([(x * w, y * h) for x, y in predicted])
    true = np.array([(x * w, y * h) for x, y in truth])
    cost = np.linalg.norm(pred[:, None, :] - true[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    matches = []
    for r, c in zip(rows, cols, strict=True):
        (px, py), (tx, ty) = predicted[r], truth[c]
        near = bool(np.hypot(px - tx, py - ty) <= RADIUS)
        matches.append(Match(int(r), int(c), float(cost[r, c]), near))
    return PointScore(len(predicted), len(truth), sum(m.hit for m in matches), tuple(matches))


def dilated(mask: np.ndarray, dilate_px: int) -> np.ndarray:
    """The mask grown by every pixel within ``dilate_px`` (Euclidean distance, a disk — not the
    (2r+1)² square, whose corners reach 1.41 r and would count misses ~4 px off as hits)."""
    if not dilate_px:
        return mask.astype(bool)
    d = np.arange(-dilate_px, dilate_px + 1)
    disk = (d[:, None] ** 2 + d[None, :] ** 2 <= dilate_px**2).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), disk) > 0


def micro(scores: list[PointScore]) -> dict[str, float]:
    """Object-level precision, recall and F1 over all images: hits / predictions and hits / objects
    summed over the images, so an image without objects adds its predictions (false positives) only."""
    predictions = sum(s.predictions for s in scores)
    objects = sum(s.objects for s in scores)
    hits = sum(s.hits for s in scores)
    return _prf(hits, predictions, objects) | {"predictions": predictions, "objects": objects, "hits": hits}


def bootstrap_micro(
    scores: list[PointScore], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile bootstrap interval of the micro precision, recall and F1, resampling images."""
    if not scores:
        return {}
    counts = np.array([(s.hits, s.predictions, s.objects) for s in scores], float)
    rng = np.random.default_rng(seed)
    totals = counts[rng.integers(0, len(counts), (samples, len(counts)))].sum(axis=1)
    hits, predictions, objects = totals.T
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predictions > 0, hits / predictions, (objects == 0).astype(float))
        recall = np.where(objects > 0, hits / objects, (predictions == 0).astype(float))
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {
        name: [float(v) for v in np.percentile(values, q)]
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
    }


def _prf(hits: float, predictions: float, objects: float) -> dict[str, float]:
    precision = hits / predictions if predictions else float(objects == 0)
    recall = hits / objects if objects else float(predictions == 0)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def summarize(scores: list[PointScore]) -> dict[str, float | dict[str, float]]:
    """Mean per-image precision, recall and F1 (an image without objects and without predictions
    scores 1), and the object-level (micro) figures under ``micro``."""
    if not scores:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "images": 0}
    return {
        "precision": float(np.mean([s.precision for s in scores])),
        "recall": float(np.mean([s.recall for s in scores])),
        "f1": float(np.mean([s.f1 for s in scores])),
        "images": len(scores),
        "micro": micro(scores),
    }
