"""The part generator's ground truth is exact and deterministic."""

import cv2
import numpy as np
import pytest

from edge_inspect.sim import DEFECT_KINDS, PartSpec, render_part

SEEDS = range(40)


@pytest.fixture(scope="module")
def parts():
    return [render_part(seed) for seed in SEEDS]


def test_same_seed_same_bytes():
    a, b = render_part(123), render_part(123)
    assert a.image.tobytes() == b.image.tobytes()
    assert [o.point for o in a.objects] == [o.point for o in b.objects]
    assert render_part(124).image.tobytes() != a.image.tobytes()


def test_every_point_lies_in_its_mask(parts):
    for part in parts:
        for obj in part.objects:
            x, y = int(round(obj.point[0])), int(round(obj.point[1]))
            assert obj.mask[y, x], (part.seed, obj.kind, obj.point)


def test_four_holes_each_screw_or_empty(parts):
    for part in parts:
        holes = part.of_kind("screw", "empty_hole")
        assert len(holes) == 4
        for hole in holes:  # a screw sits in its hole: the point is the hole's centre
            ys, xs = np.nonzero(hole.mask)
            assert abs(xs.mean() - hole.point[0]) < 1.5 and abs(ys.mean() - hole.point[1]) < 1.5


def test_screws_are_visible_and_holes_dark(parts):
    for part in parts:
        grey = cv2.cvtColor(part.image, cv2.COLOR_BGR2GRAY).astype(float)
        for obj in part.of_kind("screw", "empty_hole"):
            inner = cv2.erode(obj.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            if obj.kind == "empty_hole":
                assert grey[inner].mean() < 60, part.seed


def test_defect_masks_cover_changed_pixels():
    """A defect's mask is where the image differs from the same part rendered without it."""
    for seed in range(10):
        with_defect = render_part(seed, spec=PartSpec(defects=1, screws=4, label="straight"))
        (defect,) = with_defect.defects
        inner = cv2.erode(defect.mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if not inner.any():
            inner = defect.mask
        grey = cv2.cvtColor(with_defect.image, cv2.COLOR_BGR2GRAY).astype(float)
        ring = (cv2.dilate(defect.mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0) & ~(
            cv2.dilate(defect.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        )
        assert np.abs(grey[inner] - grey[ring].mean()).mean() > 15, (seed, defect.kind)


def test_label_mask_marks_the_label(parts):
    """The label's mask is empty when it is absent, else it covers the bright label (text bars aside)."""
    for part in parts:
        if part.label == "absent":
            assert not part.label_mask.any(), part.seed
            continue
        grey = cv2.cvtColor(part.image, cv2.COLOR_BGR2GRAY).astype(float)
        inner = cv2.erode(part.label_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert inner.sum() > 500, part.seed
        assert np.percentile(grey[inner], 75) > 200, part.seed  # most of it is white paper
        bright = grey > 215  # the label, and the odd bright scratch or dent highlight
        near = cv2.dilate(part.label_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert bright[near].sum() > 0.6 * bright.sum(), part.seed


def test_spec_is_obeyed():
    part = render_part(7, spec=PartSpec(screws=2, defects=3, label="absent", defect_kinds=("scratch",)))
    assert len(part.screws) == 2 and len(part.defects) == 3 and part.label == "absent"
    assert {d.kind for d in part.defects} == {"scratch"}
    assert part.answers() == {"label_present": False, "label_straight": False}


def test_variety(parts):
    assert {p.label for p in parts} == {"straight", "skewed", "absent"}
    assert {len(p.screws) for p in parts} >= {2, 3, 4}
    assert {d.kind for p in parts for d in p.defects} == set(DEFECT_KINDS)
    assert any(not p.defects for p in parts) and any(len(p.defects) >= 2 for p in parts)
