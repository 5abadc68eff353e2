"""Schema 12: parts seen by several cameras in a real SQLite log — a schema 11 log migrates (its checks
without a view), each check row carries its view, the first view's images stay where the review page
looks and the other views' lie beside them named by the camera, each overlay with its own view's
checks, points in mm by each view's own calibration, and retention deletes the views' rows and images."""

from __future__ import annotations

import dataclasses
import sqlite3
import time

import numpy as np

from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.logbook import InspectionRecord, Store, ViewRecord
from edge_inspect.logbook.schema import LATEST, MIGRATIONS, _v12_views
from edge_inspect.verdict import Verdict

from ..support.records import record

TOP = np.full((120, 160, 3), 90, np.uint8)
SIDE = np.full((60, 80, 3), 200, np.uint8)


def test_a_schema_11_log_migrates_with_its_checks_on_no_view(tmp_path):
    version = MIGRATIONS.index(_v12_views) + 1
    assert version == 12
    db = sqlite3.connect(tmp_path / "inspections.db", isolation_level=None)
    for migration in MIGRATIONS[: version - 1]:
        migration(db)
    db.execute(f"PRAGMA user_version = {version - 1}")
    db.execute("INSERT INTO inspections (id, result_id, verdict) VALUES (7, 1, 'PASS')")
    db.execute("INSERT INTO checks (inspection_id, idx, name, kind, status) VALUES (7, 0, 'surface', 'point', 'pass')")
    db.close()
    store = Store(tmp_path, save_pass_every=0)
    assert store.conn.execute("pragma user_version").fetchone()[0] == LATEST >= version
    assert store.conn.execute("select name, view from checks").fetchall() == [("surface", None)]
    assert store.conn.execute("select count(*) from inspection_views").fetchone()[0] == 0
    new_id = store.record(record(2, Verdict.PASS), None)  # a part of one camera after the migration: no view rows
    assert store.conn.execute("select count(*) from inspection_views where inspection_id = ?", [new_id]).fetchone() == (
        0,
    )
    store.close()


def _two_views(result_id: int) -> InspectionRecord:
    base = record(result_id, Verdict.FAIL)
    outcomes = [
        dataclasses.replace(base.outcomes[0], view="top"),  # its point (0.5, 0.5) is on the top camera's frame
        CheckOutcome("edge", "point", "fail", "found 1", [(0.25, 0.75)], 1, view="side"),
    ]
    views = (
        ViewRecord("top", (160, 120), 0.5, frame_id=41, camera_ts_ns=123, grab_ms=3.0),
        ViewRecord("side", (80, 60), None, grab_ms=4.0),
    )
    rois = [[(0.1, 0.1), (0.9, 0.1), (0.9, 0.9)], [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0)]]
    return dataclasses.replace(base, outcomes=outcomes, views=views, rois=rois, frame_size=(160, 120), mm_per_px=0.5)


def test_a_two_view_part_is_one_row_with_each_view_and_its_images(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    inspection_id = store.record(_two_views(5), TOP, {"top": TOP, "side": SIDE})
    db = store.conn
    assert db.execute("select name, view from checks where inspection_id = ? order by idx", [inspection_id]).fetchall() == [
        ("surface", "top"), ("edge", "side"),
    ]  # fmt: skip
    image, overlay = db.execute("select image_path, overlay_path from inspections").fetchone()
    views = db.execute(
        "select view, idx, frame_id, camera_ts_ns, width, height, image_path, overlay_path from inspection_views "
        "where inspection_id = ? order by idx",
        [inspection_id],
    ).fetchall()
    assert [v[:6] for v in views] == [("top", 0, 41, 123, 160, 120), ("side", 1, None, None, 80, 60)]
    assert views[0][6:] == (image, overlay)  # the first view's images are the row's own
    side_image, side_overlay = views[1][6:]
    assert side_image == image.removesuffix(".jpg") + "_side.jpg"
    assert side_overlay == image.removesuffix(".jpg") + "_side_overlay.jpg"
    import cv2

    raw = cv2.imread(str(tmp_path / side_image))
    assert raw.shape == SIDE.shape and abs(float(raw.mean()) - 200) < 2  # the side camera's frame
    # each overlay draws its own view's checks: the top one the ROI of check 1 in its colour, not check 2's
    top_drawn, side_drawn = cv2.imread(str(tmp_path / overlay)), cv2.imread(str(tmp_path / side_overlay))
    assert top_drawn.shape[1] == 160 and side_drawn.shape[1] == 80
    assert not np.array_equal(side_drawn[:60], SIDE)  # the side's ROI and point are drawn on it
    # nothing of the top check's ROI, whose edge would run along row 6 (JPEG blurs a few levels)
    assert int(np.abs(side_drawn[2:14, 4:76].astype(int) - 200).max()) <= 8
    points = db.execute("select check_idx, x, y, x_mm, y_mm from points order by check_idx").fetchall()
    assert points == [(0, 0.5, 0.5, 40.0, 30.0), (1, 0.25, 0.75, None, None)]  # side: not calibrated, no mm
    store.close()


def test_retention_deletes_the_views_rows_and_images(tmp_path):
    store = Store(tmp_path, save_pass_every=0, retention_days=1)
    old = store.record(_two_views(1), TOP, {"top": TOP, "side": SIDE})
    kept = store.record(_two_views(2), TOP, {"top": TOP, "side": SIDE})
    files = sorted(p.name for p in (tmp_path / "images").rglob("*.jpg"))
    assert len(files) == 8 and sum("_side" in f for f in files) == 4
    store.conn.execute("update inspections set ts_unix = ? where id = ?", [time.time() - 3 * 86400, old])
    assert store.enforce_retention()["deleted"] == 1
    left = {r[0] for r in store.conn.execute("select inspection_id from inspection_views")}
    assert left == {kept}
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 4
    store.max_disk_bytes = 1  # over the image budget: the kept part loses its images, all four
    assert store.enforce_retention()["images_trimmed"] == 1
    assert list((tmp_path / "images").rglob("*.jpg")) == []
    assert store.conn.execute("select image_path from inspection_views").fetchall() == [(None,), (None,)]
    store.close()
