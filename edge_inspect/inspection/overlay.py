"""Draws an inspection onto its frame: each check's ROI and points in that check's colour, and
under the frame a strip with the verdict and a legend naming the checks with their outcome.

Used for the overlay images kept in the log, `edge-inspect try` and the setup page's try; the HMI's
live image leaves the strip out (its check list beside the picture is the legend).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

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


def _legend_entries(
    outcomes: Sequence[CheckOutcome], only: Collection[int] | None = None
) -> list[tuple[str, tuple[int, int, int]]]:
    return [
        (f"{i + 1} {o.name} {_STATUS_MARK.get(o.status, o.status)}", check_colour(i))
        for i, o in enumerate(outcomes)
        if only is None or i in only
    ]


def _legend_strip(
    width: int, outcomes: Sequence[CheckOutcome], verdict: Verdict, scale: float, only: Collection[int] | None = None
) -> np.ndarray:
    """The verdict and one entry per check ("1 surface FAIL" behind a swatch in the check's colour),
    flowed into rows on a dark strip as wide as the frame: drawn beside the part, never over it."""
    font, text_scale, thick = cv2.FONT_HERSHEY_SIMPLEX, scale * 0.9, max(1, round(scale * 1.3))
    line_h = int(22 * scale / 0.5)
    pad = max(4, line_h // 4)
    (vw, vh), _ = cv2.getTextSize(verdict.name, font, text_scale * 1.2, 2)
    items: list[tuple[int, int, str, tuple[int, int, int]]] = []  # x, row, text, swatch colour
    x, row = pad + vw + 2 * pad, 0
    for text, colour in _legend_entries(outcomes, only):
        (tw, _), _ = cv2.getTextSize(text, font, text_scale, thick)
        size = line_h - 8 + 4 + tw + 2 * pad
        if x + size > width and x > pad + vw + 2 * pad:
            x, row = pad, row + 1
        items.append((x, row, text, colour))
        x += size
    strip = np.full(((row + 1) * line_h + pad, width, 3), 32, np.uint8)
    cv2.rectangle(strip, (0, 0), (vw + 2 * pad, line_h), _VERDICT_BGR[verdict], -1)
    cv2.putText(strip, verdict.name, (pad, (line_h + vh) // 2), font, text_scale * 1.2, (255, 255, 255), 2, cv2.LINE_AA)
    for x, row, text, colour in items:
        top = row * line_h + pad // 2
        cv2.rectangle(strip, (x, top + 4), (x + line_h - 8, top + line_h - 4), colour, -1)
        cv2.rectangle(strip, (x, top + 4), (x + line_h - 8, top + line_h - 4), (160, 160, 160), 1)  # black on dark
        cv2.putText(
            strip, text, (x + line_h - 4, top + line_h - 8), font, text_scale, (255, 255, 255), thick, cv2.LINE_AA
        )
    return strip


def draw_overlay(
    frame: np.ndarray,
    outcomes: Sequence[CheckOutcome],
    verdict: Verdict,
    rois: Sequence[Polygon | None] = (),
    legend: bool = True,
    only: Collection[int] | None = None,
) -> np.ndarray:
    """A copy of ``frame`` (BGR) with each check's ROI (fractions of the frame) and points in its
    colour and a numbered label at each point. With ``legend``, a strip under the frame names the
    verdict and each check with its outcome (the image grows by the strip's height); without it
    (the HMI, whose check list is the legend) the image keeps the frame's size. ``only``: the checks
    (indices) that look at this frame, when a part is seen by several cameras; each keeps its number
    and colour."""
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(w, h) / 700)
    for i, roi in enumerate(rois):
        if roi and (only is None or i in only):
            pts = np.array([[x * w, y * h] for x, y in roi], np.int32)
            cv2.polylines(out, [pts], True, check_colour(i), max(1, int(scale * 2)), cv2.LINE_8)
    radius = max(5, int(min(w, h) / 40))
    for i, outcome in enumerate(outcomes):
        if only is not None and i not in only:
            continue
        colour = check_colour(i)
        for x, y in outcome.points:
            centre = (int(x * w), int(y * h))
            cv2.circle(out, centre, radius, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.circle(out, centre, radius, colour, 2, cv2.LINE_AA)
            cv2.circle(out, centre, 1, colour, -1)
            _text(out, str(i + 1), (centre[0] + radius, centre[1] - radius), scale * 0.8, colour)
    if not legend:
        return out
    return np.vstack([out, _legend_strip(w, outcomes, verdict, scale, only)])
