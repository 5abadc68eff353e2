"""Draws an inspection onto its frame: ROIs, the model's points and the verdict.

Used for the HMI's live image and for the overlay images kept in the log.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .checks import CheckOutcome
from .verdict import Verdict

Polygon = Sequence[tuple[float, float]]

_STATUS_BGR = {"pass": (80, 200, 80), "fail": (40, 40, 230), "error": (0, 165, 255)}
_VERDICT_STATUS = {Verdict.PASS: "pass", Verdict.FAIL: "fail", Verdict.ERROR: "error"}
_ROI_BGR = (255, 200, 0)


def draw_overlay(frame: np.ndarray, outcomes: Sequence[CheckOutcome], verdict: Verdict,
                 rois: Sequence[Polygon | None] = ()) -> np.ndarray:
    """A copy of ``frame`` (BGR) with ROIs (fractions of the frame), points and the verdict drawn."""
    out = frame.copy()
    h, w = out.shape[:2]
    for roi in rois:
        if roi:
            pts = np.array([[x * w, y * h] for x, y in roi], np.int32)
            cv2.polylines(out, [pts], True, _ROI_BGR, 1, cv2.LINE_AA)
    for outcome in outcomes:
        colour = _STATUS_BGR[outcome.status]
        for x, y in outcome.points:
            centre = (int(x * w), int(y * h))
            cv2.circle(out, centre, 6, colour, 2, cv2.LINE_AA)
            cv2.circle(out, centre, 1, colour, -1)
    label = verdict.name
    cv2.rectangle(out, (0, 0), (8 + 11 * len(label), 22), (0, 0, 0), -1)
    cv2.putText(out, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _STATUS_BGR[_VERDICT_STATUS[verdict]], 1,
                cv2.LINE_AA)
    return out
