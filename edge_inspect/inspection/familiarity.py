"""How far a frame lies from what the model saw at commissioning: pure numbers, no model, no I/O.

A view's reference is the mean and the inverse covariance of the pooled image features of the
commissioning frames (vlm/features.py), the covariance shrunk towards a scaled identity with the
Ledoit–Wolf weight (a few hundred frames against 2 × hidden dimensions: the plain sample covariance
cannot be inverted). A frame's score is its Mahalanobis distance to the mean.

The threshold comes from the reference's own frames, each scored while held out: the frames are
cut into ``FOLDS`` folds, each fold is scored against a reference fitted on the others, and a
log-normal fitted to those held-out scores gives the threshold at its ``quantile`` (default 0.999,
for at most 0.5 % false alarms on normal frames with room for a hold-out of a few hundred frames:
the highest of 200 held-out scores alone would say nothing about the 0.5 % tail). The reference kept
is fitted on all frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .checks import CheckOutcome, verdict
from .inspector import Inspection

FOLDS = 5
MIN_FRAMES = 30  # fewer commissioning frames than this leave the threshold a guess
DEFAULT_QUANTILE = 0.999
REASON = "unfamiliar image"


@dataclass(frozen=True)
class ViewReference:
    """One view's reference: the mean, the shrunk inverse covariance, the threshold, and how the
    held-out frames scored (for the status and the docs)."""

    mean: np.ndarray  # [d]
    precision: np.ndarray  # [d, d]
    threshold: float
    frames: int
    shrinkage: float
    holdout: tuple[float, float, float]  # median, p99, max of the held-out scores

    def score(self, vector: np.ndarray) -> float:
        z = np.asarray(vector, dtype=np.float64) - self.mean
        return float(math.sqrt(max(0.0, float(z @ self.precision @ z))))


def shrunk_covariance(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, Ledoit–Wolf covariance (towards ``trace/d · I``) and the shrinkage weight of the rows ``x``."""
    n, d = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    sample = xc.T @ xc / n
    mu = float(np.trace(sample)) / d
    target_gap = float(np.sum((sample - mu * np.eye(d)) ** 2))
    norms = np.einsum("ij,ij->i", xc, xc)
    # Σ_i ||x_i x_iᵀ − S||² = Σ ||x_i||⁴ − 2 Σ x_iᵀ S x_i + n ||S||², each term without a d×d per row
    spread = float(np.sum(norms**2) - 2 * np.einsum("ij,jk,ik->", xc, sample, xc) + n * np.sum(sample**2)) / n**2
    weight = 1.0 if target_gap <= 0 else min(1.0, max(0.0, spread / target_gap))
    return mean, weight * mu * np.eye(d) + (1 - weight) * sample, weight


def _fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    mean, cov, weight = shrunk_covariance(x)
    cov += 1e-9 * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))  # a constant channel
    return mean, np.linalg.inv(cov), weight


def _distances(mean: np.ndarray, precision: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, precision, z), 0.0))


def held_out_scores(vectors: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """Each frame's score against a reference fitted without its fold (frame i is in fold i mod folds)."""
    x = np.asarray(vectors, dtype=np.float64)
    fold = np.arange(len(x)) % folds
    scores = np.empty(len(x))
    for k in range(folds):
        mean, precision, _ = _fit(x[fold != k])
        scores[fold == k] = _distances(mean, precision, x[fold == k])
    return scores


def threshold_for(scores: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> float:
    """The ``quantile`` of a log-normal fitted to held-out ``scores``, never below the highest of them."""
    logs = np.log(np.maximum(np.asarray(scores, dtype=np.float64), 1e-12))
    z = NormalDist().inv_cdf(quantile)
    return float(max(math.exp(float(logs.mean()) + z * float(logs.std(ddof=1))), float(np.max(scores))))


def fit_reference(vectors: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> ViewReference:
    """A view's reference from the pooled features of its commissioning frames [n, d]."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_FRAMES:
        raise ValueError(f"a reference needs at least {MIN_FRAMES} frames, got {len(x)}")
    if not 0.5 < quantile < 1:
        raise ValueError(f"quantile {quantile}: between 0.5 and 1")
    held = held_out_scores(x)
    mean, precision, weight = _fit(x)
    return ViewReference(
        mean=mean,
        precision=precision,
        threshold=threshold_for(held, quantile),
        frames=len(x),
        shrinkage=weight,
        holdout=(float(np.median(held)), float(np.quantile(held, 0.99)), float(held.max())),
    )


def mark_unfamiliar(inspection: Inspection, flagged: dict[str, str], action: str) -> Inspection:
    """The checks of each flagged view (view key → why, e.g. "score 41.2 over 30.3") judged
    ``action``: "error" (the check is ERROR: the part could not be judged) or "uncertain" (a check
    that passed fails, fail-safe, with an ``uncertain:`` reason as a low yes/no margin gets). The
    model's answer stays in each outcome; the reason says "unfamiliar image" and the score."""
    if not flagged:
        return inspection
    outcomes = list(inspection.outcomes)
    for view in inspection.views:
        why = flagged.get(view.key)
        if why is None:
            continue
        for i in view.members:
            if i < len(outcomes):
                outcomes[i] = _unfamiliar(outcomes[i], why, action)
    errors = [o.reason for o in outcomes if o.status == "error"]
    return dataclasses.replace(inspection, verdict=verdict(outcomes), outcomes=outcomes, error="; ".join(errors))


def _unfamiliar(outcome: CheckOutcome, why: str, action: str) -> CheckOutcome:
    if action == "error":
        return dataclasses.replace(outcome, status="error", reason=f"{REASON} ({why}); model said: {outcome.reason}")
    status = "fail" if outcome.status == "pass" else outcome.status
    return dataclasses.replace(outcome, status=status, reason=f"uncertain: {REASON} ({why}); {outcome.reason}")
