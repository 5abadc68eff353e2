"""Runs one recipe on one frame with the model: one image encoding per frame (or per ROI crop),
shared by every check that looks at it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..config import QACheck, Recipe
from ..verdict import Verdict
from ..vlm import VisionLanguageModel
from .checks import CheckOutcome, error_outcome, judge_points, judge_qa, verdict


@dataclass(frozen=True)
class View:
    """What the checks ``members`` looked at (the frame, or one ROI crop): its key, and the pooled
    image features of its encoding (vlm/features.py; None when the model failed on it)."""

    key: str
    members: tuple[int, ...]
    pooled: np.ndarray | None = None


@dataclass
class Inspection:
    verdict: Verdict
    outcomes: list[CheckOutcome]
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""
    views: list[View] = field(default_factory=list)


def crop_box(roi: list[tuple[float, float]], width: int, height: int) -> tuple[int, int, int, int]:
    xs = [p[0] for p in roi]
    ys = [p[1] for p in roi]
    x0, x1 = int(np.floor(min(xs) * width)), int(np.ceil(max(xs) * width))
    y0, y1 = int(np.floor(min(ys) * height)), int(np.ceil(max(ys) * height))
    return max(0, x0), max(0, y0), min(width, max(x1, x0 + 1)), min(height, max(y1, y0 + 1))


def view_key(box: tuple[int, int, int, int] | None) -> str:
    """``frame``, or ``crop x0,y0,x1,y1`` (pixels): how references and logs name a view."""
    return "frame" if box is None else "crop " + ",".join(str(v) for v in box)


def views(recipe: Recipe, width: int, height: int) -> dict[tuple[int, int, int, int] | None, list[int]]:
    """The recipe's views on a frame of this size: the crop box (None: the whole frame) of each
    group of checks that share one image encoding, with the indices of its checks."""
    groups: dict[tuple[int, int, int, int] | None, list[int]] = {}
    for i, check in enumerate(recipe.checks):
        box = crop_box(check.roi, width, height) if check.crop and check.roi else None
        groups.setdefault(box, []).append(i)
    return groups


class Inspector:
    def __init__(self, model: VisionLanguageModel, max_new_tokens: int = 96):
        self.model = model
        self.max_new_tokens = max_new_tokens

    def run(self, frame_bgr: np.ndarray, recipe: Recipe) -> Inspection:
        """Checks that look at the same view (the frame, or one ROI crop) share one image encoding and
        one batched prefill; their pointing prompts are decoded together. A check's ``ms`` is the time
        of its group (the encoding and the batch it was answered in)."""
        height, width = frame_bgr.shape[:2]
        timings: dict[str, float] = {
            "preprocess_ms": 0.0,
            "vision_ms": 0.0,
            "prefill_ms": 0.0,
            "decode_ms": 0.0,
            "decode_tokens": 0.0,
        }
        groups = views(recipe, width, height)
        outcomes: list[CheckOutcome | None] = [None] * len(recipe.checks)
        seen: list[View] = []
        start = time.perf_counter()
        for box, members in groups.items():
            t0 = time.perf_counter()
            checks = [recipe.checks[i] for i in members]
            try:
                view = frame_bgr if box is None else frame_bgr[box[1] : box[3], box[0] : box[2]]
                image = self.model.encode(view, order="bgr")
                seen.append(View(view_key(box), tuple(members), image.pooled))
                for k in ("preprocess_ms", "vision_ms"):
                    timings[k] += image.timings_ms.get(k, 0.0)
                timings["prefill_ms"] += image.timings_ms.get("image_prefill_ms", 0.0)
                qa = [(i, c) for i, c in zip(members, checks, strict=True) if isinstance(c, QACheck)]
                pointing = [(i, c) for i, c in zip(members, checks, strict=True) if not isinstance(c, QACheck)]
                answers = self.model.ask(
                    image,
                    [c.question for _, c in qa],
                    [c.prompt for _, c in pointing],
                    self.max_new_tokens,
                    max_points=[c.decode_cap() for _, c in pointing],
                )
            except Exception as err:  # a model failure makes these checks ERROR, never PASS
                for i in members:
                    outcomes[i] = error_outcome(recipe.checks[i], f"model failed: {type(err).__name__}: {err}")
                continue
            timings["prefill_ms"] += answers.timings_ms["prefill_ms"]
            timings["decode_ms"] += answers.timings_ms["decode_ms"]
            timings["decode_tokens"] += answers.timings_ms["tokens"]
            ms = (time.perf_counter() - t0) * 1000
            for (i, qa_check), answer in zip(qa, answers.yes_no, strict=True):
                outcomes[i] = judge_qa(qa_check, answer.p_yes, answer.margin, ms=ms, mass=answer.mass)
            for (i, point_check), result in zip(pointing, answers.pointing, strict=True):
                points = [(p.x, p.y) for p in result.answer.points]
                if box is not None:  # crop fractions → frame fractions
                    bw, bh = box[2] - box[0], box[3] - box[1]
                    points = [((box[0] + x * bw) / width, (box[1] + y * bh) / height) for x, y in points]
                outcomes[i] = judge_points(point_check, points, result.answer.malformed, result.text, ms=ms)
        timings["inspect_ms"] = (time.perf_counter() - start) * 1000
        done = [o for o in outcomes if o is not None]
        errors = [o.reason for o in done if o.status == "error"]
        return Inspection(verdict(done), done, timings, "; ".join(errors), seen)
