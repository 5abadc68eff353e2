"""Runs one recipe on one frame with the model: one image encoding per frame (or per ROI crop),
shared by every check that looks at it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .checks import CheckOutcome, error_outcome, judge_points, judge_qa, verdict
from .config import QACheck, Recipe
from .verdict import Verdict
from .vlm import VisionLanguageModel


@dataclass
class Inspection:
    verdict: Verdict
    outcomes: list[CheckOutcome]
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""


def crop_box(roi: list[tuple[float, float]], width: int, height: int) -> tuple[int, int, int, int]:
    xs = [p[0] for p in roi]
    ys = [p[1] for p in roi]
    x0, x1 = int(np.floor(min(xs) * width)), int(np.ceil(max(xs) * width))
    y0, y1 = int(np.floor(min(ys) * height)), int(np.ceil(max(ys) * height))
    return max(0, x0), max(0, y0), min(width, max(x1, x0 + 1)), min(height, max(y1, y0 + 1))


class Inspector:
    def __init__(self, model: VisionLanguageModel, max_new_tokens: int = 96):
        self.model = model
        self.max_new_tokens = max_new_tokens

    def run(self, frame_bgr: np.ndarray, recipe: Recipe) -> Inspection:
        height, width = frame_bgr.shape[:2]
        timings: dict[str, float] = {"preprocess_ms": 0.0, "vision_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0,
                                     "decode_tokens": 0.0}
        encoded: dict[tuple | None, object] = {}
        outcomes: list[CheckOutcome] = []
        start = time.perf_counter()
        for check in recipe.checks:
            box = crop_box(check.roi, width, height) if check.crop and check.roi else None
            t0 = time.perf_counter()
            try:
                if box not in encoded:
                    view = frame_bgr if box is None else frame_bgr[box[1] : box[3], box[0] : box[2]]
                    image = self.model.encode(view, order="bgr")
                    encoded[box] = image
                    for k in ("preprocess_ms", "vision_ms"):
                        timings[k] += image.timings_ms.get(k, 0.0)
                    timings["prefill_ms"] += image.timings_ms.get("image_prefill_ms", 0.0)
                image = encoded[box]
                if isinstance(check, QACheck):
                    answer = self.model.ask_yes_no(image, check.question)
                    timings["prefill_ms"] += answer.timings_ms["prefill_ms"]
                    outcomes.append(judge_qa(check, answer.p_yes, answer.margin, ms=(time.perf_counter() - t0) * 1000))
                else:
                    pointing = self.model.point(image, check.prompt, self.max_new_tokens)
                    timings["prefill_ms"] += pointing.timings_ms["prefill_ms"]
                    timings["decode_ms"] += pointing.timings_ms["decode_ms"]
                    timings["decode_tokens"] += pointing.timings_ms["tokens"]
                    points = [(p.x, p.y) for p in pointing.answer.points]
                    if box is not None:  # crop fractions → frame fractions
                        bw, bh = box[2] - box[0], box[3] - box[1]
                        points = [((box[0] + x * bw) / width, (box[1] + y * bh) / height) for x, y in points]
                    outcomes.append(judge_points(check, points, pointing.answer.malformed, pointing.text,
                                                 ms=(time.perf_counter() - t0) * 1000))
            except Exception as err:  # a model failure makes this check ERROR, never PASS
                outcomes.append(error_outcome(check, f"model failed: {type(err).__name__}: {err}"))
        timings["inspect_ms"] = (time.perf_counter() - start) * 1000
        errors = [o.reason for o in outcomes if o.status == "error"]
        return Inspection(verdict(outcomes), outcomes, timings, "; ".join(errors))
