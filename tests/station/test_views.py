"""A part seen by two cameras (docs/cameras.md, "Several cameras"), through real parts: the synthetic
line and a folder camera, the demo student on ONNX Runtime, the SQLite log and a PLC over Modbus TCP
on loopback. One trigger grabs both views, each check judges its own view's frame, one verdict per
part; a view whose camera fails makes the part ERROR (code 2) naming that camera, drops `ready` and
raises camera_lost naming it, and the station takes the camera back without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import cv2

from edge_inspect.camera.sources import SyntheticSource
from edge_inspect.config import load_config
from edge_inspect.inspection.inspector import Inspector
from edge_inspect.logbook import Store, review
from edge_inspect.sim import PartSpec, render_part
from edge_inspect.vlm import load_bundle

from ..support.paths import DEMO_STUDENT
from ..support.stations import run_station_with_plc, write_station
from ..support.wait import async_wait_until

CHECKS = [
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},  # the first camera: top
    {"name": "side-label", "kind": "qa", "question": "Is the label present?", "expect": "yes", "view": "side"},
    {"name": "side-screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4, "view": "side"},
]


def _side_images(folder: Path) -> list[Path]:
    """Three parts for the side camera, unlike the top camera's (no label and two screws where the top
    camera's line has its label and four; another size)."""
    folder.mkdir()
    paths = []
    for n, seed in enumerate((900, 901, 902)):
        path = folder / f"side-{n}.png"
        cv2.imwrite(str(path), render_part(seed, 256, 192, PartSpec(screws=2, defects=0, label="absent")).image)
        paths.append(path)
    return paths


def _station(tmp_path: Path) -> Path:
    return write_station(
        tmp_path, DEMO_STUDENT, camera=None,
        cameras=[
            {"name": "top", "source": "synthetic",
             "synthetic": {"seed": 5, "width": 320, "height": 240, "defect_rate": 0.0}},
            {"name": "side", "source": "folder", "path": str(tmp_path / "side"), "stall_timeout_s": 0.5,
             "reconnect_min_s": 0.1, "reconnect_max_s": 0.2},
        ],
        model={"bundle": str(DEMO_STUDENT), "max_new_tokens": 48},
        recipes=[{"number": 1, "name": "plate", "checks": CHECKS}],
    )  # fmt: skip


def test_one_trigger_grabs_both_views_and_each_check_judges_its_own(tmp_path):
    side = _side_images(tmp_path / "side")
    path = _station(tmp_path)

    async def scenario(station, plc):
        assert station.status()["cameras"].keys() == {"top", "side"}
        return [await plc.cycle(n, 1, f"P{n}") for n in (1, 2)]

    results = asyncio.run(run_station_with_plc(path, scenario))
    assert [r.error_code for r in results] == [0, 0]
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    rows = db.execute("select id, result_id, verdict, image_path from inspections order by id").fetchall()
    assert [r[1] for r in rows] == [1, 2]  # one row, one verdict per part
    assert [{1: "PASS", 2: "FAIL", 3: "ERROR"}[r.verdict] for r in results] == [r[2] for r in rows]
    # each check ran on its own view's frame: the log's answers are the ones the model gives on that frame alone
    config, _ = load_config(path)
    recipe = config.recipes[0]
    inspector = Inspector(load_bundle(DEMO_STUDENT), 48)
    top_source = SyntheticSource(5, 320, 240, defect_rate=0.0)  # the top camera's parts, as it rendered them
    for (inspection_id, _, _, image_path), n in zip(rows, (0, 1), strict=True):
        top = inspector.run(top_source.read(), recipe)
        side_frame = cv2.imread(str(side[n]))
        alone = inspector.run(side_frame, recipe)
        logged = db.execute(
            "select name, view, p_yes, counted from checks where inspection_id = ? order by idx", [inspection_id]
        ).fetchall()
        assert [(name, view) for name, view, *_ in logged] == [("label", "top"), ("side-label", "side"),
                                                               ("side-screws", "side")]  # fmt: skip
        assert abs(logged[0][2] - top.outcomes[0].p_yes) < 1e-3  # the top camera's part
        assert abs(logged[1][2] - alone.outcomes[1].p_yes) < 1e-3  # the side camera's part
        assert logged[2][3] == alone.outcomes[2].counted
        # and the two views differ where it shows: the same question, answered yes on top, no on the side
        assert logged[0][2] > 0.5 > logged[1][2], logged
        views = db.execute(
            "select view, idx, width, height, image_path from inspection_views where inspection_id = ? order by idx",
            [inspection_id],
        ).fetchall()
        assert [v[:4] for v in views] == [("top", 0, 320, 240), ("side", 1, 256, 192)]
        assert views[0][4] == image_path and views[1][4] == image_path.removesuffix(".jpg") + "_side.jpg"
        kept = cv2.imread(str(tmp_path / "data" / views[1][4]))
        assert kept.shape == side_frame.shape  # the side camera's own frame, beside the first view's
    store = Store(tmp_path / "data")  # the review's detail (GET /api/inspections/{id}) lists the views
    detail = review.get_inspection(store, rows[0][0])
    store.close()
    assert [(v["view"], v["width"]) for v in detail["views"]] == [("top", 320), ("side", 256)]
    assert [c["view"] for c in detail["checks"]] == ["top", "side", "side"]


def test_a_failing_view_makes_the_part_error_naming_its_camera_and_drops_ready(tmp_path):
    _side_images(tmp_path / "side")
    path = _station(tmp_path)
    hidden = tmp_path / "side-away"

    async def scenario(station, plc):
        good = await plc.cycle(1, 1, "P1")
        (tmp_path / "side").rename(hidden)  # the side camera's images are gone: its camera fails
        failed = await plc.cycle(2, 1, "P2")
        await async_wait_until(lambda: station.alarms.active("camera_lost"), 10, "camera_lost")
        await plc.wait_for("ready", False, 10)
        status = station.status()
        lost = (status["camera"], status["cameras"]["side"]["status"], status["cameras"]["top"]["status"])
        alarm = station.alarms.get("camera_lost").message
        hidden.rename(tmp_path / "side")  # back: the station takes it again without a restart
        await plc.wait_for("ready", True, 20)
        again = await plc.cycle(3, 1, "P3")
        return good, failed, lost, alarm, again, station.alarms.active("camera_lost")

    good, failed, lost, alarm, again, still_lost = asyncio.run(run_station_with_plc(path, scenario))
    assert good.error_code == 0 and again.error_code == 0
    assert (failed.verdict, failed.error_code) == (3, 2)  # ERROR, camera
    assert lost == ("lost", "lost", "ok")
    assert alarm.startswith("camera side: ") and not still_lost
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    error, checks, image = db.execute(
        "select error, (select count(*) from checks where inspection_id = i.id), image_path from inspections i "
        "where result_id = 2"
    ).fetchone()
    assert error.startswith("camera side: ") and checks == 0 and image is None  # no view judged alone
    views = db.execute(
        "select view, error from inspection_views where inspection_id = (select id from inspections where "
        "result_id = 2) order by idx"
    ).fetchall()
    assert views[0] == ("top", None) and views[1][0] == "side" and views[1][1]  # which camera had no frame, and why


def test_a_recipe_on_one_camera_grabs_only_that_camera(tmp_path):
    """A recipe whose checks all look at the side camera: the top camera is not grabbed (the synthetic
    line renders its next part only when asked), and the row is that view's alone."""
    _side_images(tmp_path / "side")
    config_checks = [dict(c, view="side") for c in CHECKS]
    path = write_station(
        tmp_path, DEMO_STUDENT, camera=None,
        cameras=[
            {"name": "top", "source": "synthetic", "synthetic": {"seed": 5, "width": 320, "height": 240}},
            {"name": "side", "source": "folder", "path": str(tmp_path / "side")},
        ],
        model={"bundle": str(DEMO_STUDENT), "max_new_tokens": 48},
        recipes=[{"number": 1, "name": "plate", "checks": config_checks}],
    )  # fmt: skip

    async def scenario(station, plc):
        result = await plc.cycle(1, 1, "P1")
        return result, station.cameras.cameras["top"].camera.source.count

    result, top_reads = asyncio.run(run_station_with_plc(path, scenario))
    assert result.error_code == 0 and top_reads == 0
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    assert {v for (v,) in db.execute("select view from checks")} == {"side"}
    assert db.execute("select count(*) from inspection_views").fetchone()[0] == 0
    image = db.execute("select image_path from inspections").fetchone()[0]
    assert image is not None and cv2.imread(str(tmp_path / "data" / image)).shape[:2] == (192, 256)


def test_the_setup_pages_save_refuses_an_unknown_view_and_holds_recipes_for_a_new_camera(tmp_path):
    """The setup page's save: a check on a view that is no camera is 422 with its file:line; a save that
    adds a camera and a recipe looking at it keeps running the old recipes until the restart (the
    station does not run that camera yet), and says so."""
    import yaml

    from ..support.web import login_headers, run_setup

    _side_images(tmp_path / "side")
    checks = [CHECKS[0], {**CHECKS[1], "view": "side"}]

    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        opened = (await client.get("/api/setup/config")).json()
        data = yaml.safe_load(opened["yaml"])
        data["recipes"][0]["checks"][1]["view"] = "back"
        bad = yaml.safe_dump(data, sort_keys=False)
        refused = await client.post("/api/setup/config", headers=h, json={"yaml": bad, "base_sha256": opened["sha256"]})
        data["recipes"][0]["checks"][1]["view"] = "side"
        data["cameras"].append({"name": "back", "source": "synthetic", "synthetic": {"seed": 9}})
        data["recipes"][0]["checks"].append({**CHECKS[0], "name": "back-label", "view": "back"})
        saved = await client.post(
            "/api/setup/config", headers=h, json={"yaml": yaml.safe_dump(data, sort_keys=False),
                                                  "base_sha256": opened["sha256"]},
        )  # fmt: skip
        running = [c.name for c in station.config.recipes[0].checks]
        return bad, refused, saved.json(), running

    bad, refused, saved, running = run_setup(
        tmp_path, scenario, camera=None, recipes=[{"number": 1, "name": "plate", "checks": checks}],
        cameras=[{"name": "top", "source": "synthetic", "synthetic": {"seed": 5, "defect_rate": 0.0}},
                 {"name": "side", "source": "folder", "path": str(tmp_path / "side")}],
    )  # fmt: skip
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if text.strip() == "view: back")
    assert refused.status_code == 422
    assert refused.json()["problems"] == [
        f"{tmp_path / 'station.yaml'}:{line}: recipes.0.checks.1.view (recipe 1 'plate', check 2 'side-label'): "
        "view 'back' is not a camera of this station (cameras: top, side)"
    ]
    assert saved["applied"] == [] and saved["restart_needed"] == ["cameras", "recipes"], saved
    assert running == ["label", "side-label"]  # the running recipe is the old one until the restart
