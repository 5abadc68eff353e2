"""Draws an inspection onto its frame: each check's ROI and points in that check's colour, a
legend naming the checks with their outcome, and the verdict.

Used for the HMI's live image, the overlay images kept in the log, and `edge-inspect try`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..verdict import Verdict
from .checks import CheckOutcome

Polygon = Sequence[tuple[float, float]]

# Okabe–Ito colours (BGR): told apart with the common colour-vision deficiencies.
CHECK_BGR = [
    (0, 159, 230),
    (233, 180, 86),
    (115, 158, 0),
    (66, 228, 240),
    (178, 114, 0),
    (0, 94, 213),
    (167, 121, 204),
    (0, 0, 0),
]
_VERDICT_BGR = {Verdict.PASS: (80, 160, 80), Verdict.FAIL: (40, 40, 200), Verdict.ERROR: (0, 120, 230)}
_STATUS_MARK = {"pass": "ok", "fail": "FAIL", "error": "ERR"}


def check_colour(index: int) -> tuple[int, int, int]:
    return CHECK_BGR[index % len(CHECK_BGR)]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour, thickness: int = 1) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def draw_overlay(
    frame: np.ndarray, outcomes: Sequence[CheckOutcome], verdict: Verdict, rois: Sequence[Polygon | None] = ()
) -> np.ndarray:
    """A copy of ``frame`` (BGR) with each check's ROI (fractions of the frame) and points in its
    colour, a numbered label at each point, a legend, and the verdict."""
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(w, h) / 700)
    for i, roi in enumerate(rois):
        if roi:
            pts = np.array([[x * w, y * h] for x, y in roi], np.int32)
            cv2.polylines(out, [pts], True, check_colour(i), max(1, int(scale * 2)), cv2.LINE_8)
    radius = max(5, int(min(w, h) / 40))
    for i, outcome in enumerate(outcomes):
        colour = check_colour(i)
        for x, y in outcome.points:
            centre = (int(x * w), int(y * h))
            cv2.circle(out, centre, radius, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.circle(out, centre, radius, colour, 2, cv2.LINE_AA)
            cv2.circle(out, centre, 1, colour, -1)
            _text(out, str(i + 1), (centre[0] + radius, centre[1] - radius), scale * 0.8, colour)
    # legend, bottom left: "1 surface FAIL"
    line_h = int(22 * scale / 0.5)
    for i, outcome in enumerate(outcomes):
        y = h - 8 - (len(outcomes) - 1 - i) * line_h
        cv2.rectangle(out, (6, y - line_h + 6), (6 + line_h - 8, y - 2), check_colour(i), -1)
        _text(
            out,
            f"{i + 1} {outcome.name} {_STATUS_MARK.get(outcome.status, outcome.status)}",
            (10 + line_h - 8, y - 4),
            scale * 0.9,
            (255, 255, 255),
        )
    label = verdict.name
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale * 1.2, 2)
    cv2.rectangle(out, (0, 0), (tw + 12, th + 14), _VERDICT_BGR[verdict], -1)
    cv2.putText(out, label, (6, th + 7), cv2.FONT_HERSHEY_SIMPLEX, scale * 1.2, (255, 255, 255), 2, cv2.LINE_AA)
    return out
