"""The overlay: each check's points and ROI in its own colour; the verdict and a legend per check in a
strip under the frame, never over the part."""

import numpy as np

from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.inspection.overlay import CHECK_BGR, check_colour, draw_overlay
from edge_inspect.verdict import Verdict


def _count(img: np.ndarray, bgr) -> int:
    return int(np.all(img == np.array(bgr, np.uint8), axis=-1).sum())


OUTCOMES = [
    CheckOutcome("surface", "point", "fail", "found 1", [(0.3, 0.3)], 1),
    CheckOutcome("screws", "count", "pass", "4 of 4", [(0.7, 0.7)], 1),
]


def test_each_check_in_its_own_colour_with_a_legend_under_the_part():
    frame = np.full((480, 640, 3), 128, np.uint8)
    roi = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]
    out = draw_overlay(frame, OUTCOMES, Verdict.FAIL, [None, roi])
    assert check_colour(0) != check_colour(1) and len(set(CHECK_BGR)) == len(CHECK_BGR)
    # the point's centre dot in the check's colour, at the point
    assert tuple(out[int(0.3 * 480), int(0.3 * 640)]) == check_colour(0)
    assert tuple(out[int(0.7 * 480), int(0.7 * 640)]) == check_colour(1)
    # the ROI of check 2 in check 2's colour along its top edge
    assert _count(out[int(0.1 * 480) - 2 : int(0.1 * 480) + 3, 200:400], check_colour(1)) > 100
    # the legend: a strip under the frame with a swatch per check; the frame's corners stay as they were
    assert out.shape[0] > 480 and out.shape[1] == 640
    strip = out[480:]
    assert _count(strip, check_colour(0)) > 20 and _count(strip, check_colour(1)) > 20
    assert _count(strip, (40, 40, 200)) > 100  # the verdict's FAIL box
    for corner in (out[440:480, :60], out[:40, :60]):  # the frame's own corners: nothing drawn there
        assert _count(corner, (128, 128, 128)) == corner.shape[0] * corner.shape[1]
    assert np.array_equal(frame, np.full((480, 640, 3), 128, np.uint8))  # the frame itself is untouched


def test_many_checks_flow_into_rows_and_no_legend_keeps_the_frame_size():
    frame = np.full((240, 320, 3), 90, np.uint8)
    many = [CheckOutcome(f"check number {i}", "qa", "pass", "", [], 0) for i in range(8)]
    out = draw_overlay(frame, many, Verdict.PASS)
    one_row = draw_overlay(frame, many[:1], Verdict.PASS)
    assert out.shape[0] > one_row.shape[0] > 240  # more rows, not text cut at the right edge
    assert all(_count(out[240:], check_colour(i)) > 10 for i in range(8))
    bare = draw_overlay(frame, OUTCOMES, Verdict.FAIL, legend=False)
    assert bare.shape == frame.shape
