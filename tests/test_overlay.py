"""The overlay: each check's points and ROI in its own colour, a legend per check, the verdict."""

import numpy as np

from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.inspection.overlay import CHECK_BGR, check_colour, draw_overlay
from edge_inspect.verdict import Verdict


def _count(img: np.ndarray, bgr) -> int:
    return int(np.all(img == np.array(bgr, np.uint8), axis=-1).sum())


def test_each_check_in_its_own_colour_with_a_legend():
    frame = np.full((480, 640, 3), 128, np.uint8)
    outcomes = [
        CheckOutcome("surface", "point", "fail", "found 1", [(0.3, 0.3)], 1),
        CheckOutcome("screws", "count", "pass", "4 of 4", [(0.7, 0.7)], 1),
    ]
    roi = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    out = draw_overlay(frame, outcomes, Verdict.FAIL, [None, roi])
    assert check_colour(0) != check_colour(1) and len(set(CHECK_BGR)) == len(CHECK_BGR)
    # the point's centre dot in the check's colour, at the point
    assert tuple(out[int(0.3 * 480), int(0.3 * 640)]) == check_colour(0)
    assert tuple(out[int(0.7 * 480), int(0.7 * 640)]) == check_colour(1)
    # the ROI of check 2 in check 2's colour along its top edge
    assert _count(out[int(0.1 * 480) - 2 : int(0.1 * 480) + 3, 200:400], check_colour(1)) > 100
    # legend swatches at the bottom left, one per check
    legend = out[380:, :40]
    assert _count(legend, check_colour(0)) > 20 and _count(legend, check_colour(1)) > 20
    assert np.array_equal(frame, np.full((480, 640, 3), 128, np.uint8))  # the frame itself is untouched
