"""The unfamiliar-frame guard through the real parts: the demo student on ONNX Runtime, a station on
the synthetic camera with a reference built by ``edge-inspect model reference``, the SQLite log.
A covered lens is flagged with its reason and score, normal frames are not, the alarm rises with
the rate and clears, review sampling takes the flagged parts with their frame, a missing reference
is reported. A covered lens is a folder camera replaying the station's own parts with something
over the lens where the scenario says so."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import cv2
import pytest

from edge_inspect.camera.sources import source_from_config
from edge_inspect.cli import main
from edge_inspect.config import load_config
from edge_inspect.sim.foreign import covered

from ..support.paths import DEMO_STUDENT
from ..support.stations import run_station, write_station

RECIPES = [{
    "number": 1, "name": "plate", "checks": [
        {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
        {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
    ]}]  # fmt: skip


def station_file(tmp_path, camera: dict | None = None, **unfamiliar):
    return write_station(
        tmp_path, DEMO_STUDENT, recipes=RECIPES, plc={"enabled": False},
        camera=camera or {"source": "synthetic", "synthetic": {"seed": 5, "defect_rate": 0.2}},
        unfamiliar={"alarm_window": 4, "alarm_share": 0.25, **unfamiliar},
    )  # fmt: skip


def lens_station(tmp_path: Path, commissioned: Path, lens: list[str | None], **unfamiliar) -> Path:
    """A station with the commissioned station's reference whose camera (a folder) delivers the parts
    the commissioned station's camera delivers, in order, one per entry of ``lens``: as they are (None)
    or with something over the lens (a kind of ``covered``)."""
    source = source_from_config(load_config(commissioned)[0].camera)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, kind in enumerate(lens):
        frame = source.read()
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame if kind is None else covered(i, frame, kind))
    shutil.copytree(commissioned.parent / "data" / "references", tmp_path / "data" / "references")
    return station_file(tmp_path, camera={"source": "folder", "path": str(folder)}, **unfamiliar)


@pytest.fixture(scope="module")
def commissioned(tmp_path_factory):
    """A station file and its reference, built by the command from 40 frames of the station's camera."""
    tmp_path = tmp_path_factory.mktemp("commissioned")
    path = station_file(tmp_path)
    assert main(["model", "reference", "--config", str(path), "--frames", "40"]) == 0
    return path


def test_a_covered_lens_is_flagged_normal_frames_are_not_and_the_alarm_follows_the_rate(tmp_path, commissioned):
    path = lens_station(tmp_path, commissioned, [None] * 3 + ["black"] * 2 + [None] * 4)

    async def scenario(station):
        seen = {"status": station.status()["unfamiliar"]}
        normal = [await station.inspect(1, part_id=f"N{i}") for i in range(3)]
        flagged = [await station.inspect(1, part_id=f"C{i}") for i in range(2)]  # the lens covered
        seen["alarm_up"] = [a["code"] for a in station.alarms.listed() if a["active"]]
        calm = [await station.inspect(1, part_id=f"M{i}") for i in range(4)]  # uncovered again
        seen["alarm_after"] = [a["code"] for a in station.alarms.listed() if a["active"]]
        seen["window"] = station.status()["unfamiliar"]["window"]
        return normal, flagged, calm, seen

    normal, flagged, calm, seen = asyncio.run(run_station(path, scenario))
    assert seen["status"]["state"] == "on"
    for rec, _ in normal + calm:
        assert not rec.unfamiliar and rec.unfamiliar_score is not None and rec.verdict.name != "ERROR"
        assert rec.unfamiliar_score < rec.unfamiliar_threshold
    for rec, code in flagged:
        assert rec.unfamiliar and rec.verdict.name == "ERROR" and int(code) == 1
        assert all(o.status == "error" and o.reason.startswith("unfamiliar image (score ") for o in rec.outcomes)
        assert rec.unfamiliar_score > 2 * rec.unfamiliar_threshold  # a black frame is far out, not borderline
        assert rec.review_reason.startswith("unfamiliar image: score ")
    assert "unfamiliar_images" in seen["alarm_up"] and "model_error" not in seen["alarm_up"]  # 2 of 4 > 25 %
    assert "unfamiliar_images" not in seen["alarm_after"]  # the covered parts left the window
    assert seen["window"] == {"parts": 4, "unfamiliar": 0, "of": 4}
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    rows = db.execute(
        "SELECT part_id, verdict, unfamiliar_score, unfamiliar_threshold, review_reason, image_path FROM inspections"
    ).fetchall()
    by_part = {r[0]: r for r in rows}
    assert by_part["C0"][1] == "ERROR" and by_part["C0"][2] > by_part["C0"][3]
    assert by_part["C0"][4].startswith("unfamiliar image") and by_part["C0"][5]  # in the QA queue, with its frame
    assert by_part["N0"][2] < by_part["N0"][3] and not by_part["N0"][4]
    reasons = db.execute("SELECT reason FROM checks WHERE status = 'error'").fetchall()
    assert len(reasons) == 4 and all("unfamiliar image" in r[0] for r in reasons)
    alarms = db.execute("SELECT code, cleared_at FROM alarms WHERE code = 'unfamiliar_images'").fetchall()
    assert len(alarms) == 1 and alarms[0][1] is not None  # raised, then cleared, in the alarm history


def test_uncertain_action_fails_the_part_instead(tmp_path, commissioned):
    path = lens_station(tmp_path, commissioned, ["uniform"], action="uncertain")

    async def scenario(station):
        return await station.inspect(1, part_id="U0")

    rec, code = asyncio.run(run_station(path, scenario))
    assert rec.unfamiliar and rec.verdict.name == "FAIL" and int(code) == 0
    assert all(o.reason.startswith("uncertain: unfamiliar image") for o in rec.outcomes)


def test_a_station_without_a_reference_runs_as_before_and_says_so(tmp_path):
    path = station_file(tmp_path)

    async def scenario(station):
        rec, _ = await station.inspect(1)
        return rec, station.status()["unfamiliar"]

    rec, status = asyncio.run(run_station(path, scenario))
    assert rec.unfamiliar_score is None and not rec.unfamiliar
    assert status["state"].startswith("off: no reference for recipe 1 of model ")
    assert main(["model", "reference", "--config", str(path), "--folder", str(tmp_path / "nowhere")]) == 2


def test_the_sampling_rule_and_the_rollback_bound_count_unfamiliar_parts():
    from edge_inspect.config import QACheck, Recipe, ReviewSampling
    from edge_inspect.config.devices import AutoRollback
    from edge_inspect.inspection.checks import CheckOutcome
    from edge_inspect.station.model_follower import Watch
    from edge_inspect.station.review_sampling import ReviewSampler
    from edge_inspect.station.unfamiliar import Judgement
    from edge_inspect.verdict import Verdict

    recipe = Recipe(number=1, name="r", checks=[QACheck(name="label", kind="qa", question="Is it?", expect="yes")])
    far, near = Judgement(40.0, 20.0, "frame"), Judgement(10.0, 20.0, "frame")
    outcomes = [CheckOutcome("label", "qa", "fail", "uncertain: unfamiliar image (score 40.0 over 20.0); answered yes")]
    sampler = ReviewSampler(ReviewSampling())
    assert sampler.choose(recipe, Verdict.FAIL, outcomes, 0.0, far) == "unfamiliar image: score 40.0 over 20.0"
    assert sampler.choose(recipe, Verdict.PASS, [CheckOutcome("label", "qa", "pass", "")], 1.0, near) == ""
    assert ReviewSampler(ReviewSampling(unfamiliar=False, uncertain=False)).choose(
        recipe, Verdict.FAIL, outcomes, 0.0, far
    ) == ""  # fmt: skip
    watch = Watch("v", AutoRollback(parts=2, max_error_share=1.0, max_unfamiliar_share=0.4))
    watch.add("ERROR", 1.0, unfamiliar=True)
    assert watch.crossed() is None
    watch.add("PASS", 1.0)
    assert "unfamiliar images on 50% of its first 2 parts" in (watch.crossed() or "")
    calm = Watch("v", AutoRollback(parts=2, max_error_share=1.0, max_unfamiliar_share=0.5))
    calm.add("ERROR", 1.0, unfamiliar=True)
    calm.add("PASS", 1.0)
    assert calm.crossed() == ""  # at the bound, not over it


def test_a_version_without_a_reference_gets_one_from_the_kept_frames(commissioned, tmp_path):
    """What the model follower does for a promoted version (daemon._load_version): the same frames,
    kept losslessly, give the same reference."""
    from edge_inspect.config import load_config
    from edge_inspect.station import references
    from edge_inspect.vlm import load_bundle

    kept = commissioned.parent / "data" / "references"
    shutil.copytree(kept / "frames", tmp_path / "references" / "frames")
    model = load_bundle(DEMO_STUDENT)
    recipes = load_config(commissioned)[0].recipes
    written = references.prepare(model, recipes, tmp_path)
    assert written == [references.reference_path(tmp_path, model.sha256, 1)]
    assert references.prepare(model, recipes, tmp_path) == []  # there now: nothing built again
    built, original = references.load(written[0]), references.load(kept / model.sha256 / "recipe-1.npz")
    assert built.meta["source"] == "kept commissioning frames" and built.meta["frames"] == 40
    assert built.views["frame"].threshold == pytest.approx(original.views["frame"].threshold, rel=1e-6)


def test_reference_warns_of_a_running_station_and_of_few_frames_in_one_line_each(tmp_path, capsys):
    path = station_file(tmp_path)
    data = tmp_path / "data"

    async def scenario(station):
        await station.inspect(1)
        return await asyncio.to_thread(main, ["model", "reference", "--config", str(path), "--frames", "30"])

    assert asyncio.run(run_station(path, scenario)) == 0  # a warning is not an error
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [
        f"edge-inspect: warning: a station is running on {data}: grabbing competes with it for its camera "
        "(stop it, or use --folder or --kept)",
        "edge-inspect: warning: 30 frames: a reference from fewer than 100 gives an unsteady threshold (more false "
        "alarms, or misses); 200 or more are advised",
    ]
    assert main(["model", "reference", "--config", str(path), "--kept"]) == 0  # the station has stopped since
    assert [line for line in capsys.readouterr().err.splitlines() if "warning" in line] == [warned[1]]


def test_the_running_mark_is_the_station_s_while_it_holds_it(tmp_path):
    from edge_inspect.station.running import RunningMark, station_running

    assert not station_running(tmp_path)  # no mark at all
    mark = RunningMark(tmp_path)
    mark.hold()
    assert station_running(tmp_path) and station_running(tmp_path)  # asking takes nothing away
    mark.release()
    assert not station_running(tmp_path) and (tmp_path / "station.lock").is_file()
