"""`edge-inspect dataset export`: what QA said in review becomes training records in the distillation
format — a confirmed part's answers as they were, a false reject's failed yes/no answer flipped and
its defect check emptied, corrected points as corrected, a missed defect without corrections left
out — with provenance, images written once by hash, and a holdout split that does not move when the
export runs again. Through a real station, its SQLite log, the review API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_inspect.vlm.points import parse_points

from ..support.stations import write_station
from ..support.web import USERS, login_headers, run_web


def _export(config: Path, out: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "dataset", "export", str(out), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for name in ("train.jsonl", "holdout.jsonl") for line in (out / name).open()]


def test_reviewed_parts_become_training_records_with_their_provenance(tmp_path, tiny_bundle):
    path = write_station(
        tmp_path, tiny_bundle, plc={"enabled": False}, web={"enabled": True, "open_view": True, "users": USERS}
    )

    async def scenario(station, client, path):
        ids = [(await station.inspect(1, part_id=f"P{i}"))[0] for i in range(5)]
        rows = (await client.get("/api/inspections?per_page=10")).json()["items"]
        by_part = {r["part_id"]: r["id"] for r in rows}
        qa = await login_headers(client, "qa")
        for part, disposition in (("P0", "confirmed_defect"), ("P1", "false_reject"), ("P3", "missed_defect")):
            r = await client.post(
                f"/api/inspections/{by_part[part]}/disposition", json={"disposition": disposition}, headers=qa
            )
            assert r.status_code == 200, r.text
        r = await client.post(
            f"/api/inspections/{by_part['P2']}/corrections",
            json={"check_idx": 1, "add": [[0.25, 0.75]], "remove": []},
            headers=qa,
        )
        assert r.status_code == 200, r.text
        details = {p: (await client.get(f"/api/inspections/{i}")).json() for p, i in by_part.items()}
        return ids, details

    _, details = run_web(path, scenario, with_file=True)
    out = tmp_path / "dataset"
    printed = _export(path, out)
    records = _records(out)
    by = {(r["source"]["inspection"], r["task"]): r for r in records}
    ids = {p: d["id"] for p, d in details.items()}

    confirmed = details["P0"]["checks"]
    for check in confirmed:  # confirmed: the passed checks as answered, the failed ones failed rightly
        r = by[(ids["P0"], check["name"])]
        if check["kind"] == "qa":  # the label check expects "yes"
            assert r["answer"] == ((check["answer"] == "yes") if check["status"] == "pass" else False)
            assert r["target"] == ("Yes." if r["answer"] else "No.")
        else:
            assert len(r["points"]) == len(check["points"])
            assert len(parse_points(r["target"]).points) == len(check["points"])
        assert r["source"]["reviewer"] == "qa" and r["source"]["disposition"] == "confirmed_defect"
        assert r["source"]["corrected"] is False  # nobody changed its points
        assert r["source"]["model"] == details["P0"]["model_sha256"] and r["source"]["station"] == "test-station"

    for check in details["P1"]["checks"]:  # a false reject: the failed checks were wrong
        key = (ids["P1"], check["name"])
        if check["status"] == "pass":
            assert key in by
        elif check["kind"] == "qa":  # wrongly failed (another answer, or an uncertain one): the expected one
            assert by[key]["answer"] is True and by[key]["target"] == "Yes."
        elif check["name"] == "surface":  # max 0: no defect after all
            assert by[key]["points"] == [] and by[key]["target"] == "There are none."
        else:  # a count called wrong, its points not corrected: not known
            assert key not in by

    corrected = by[(ids["P2"], "screws")]  # the reviewer's points, not the model's
    assert [0.25, 0.75] in corrected["points"] and corrected["source"]["corrected"] is True
    assert not any(i == ids["P3"] for i, _ in by)  # a missed defect without corrections tells nothing
    assert not any(i == ids["P4"] for i, _ in by)  # not reviewed

    images = {r["image"] for r in records}
    assert all((out / image).is_file() for image in images)
    assert all(Path(image).stem == r["source"]["image_sha256"] for r in records for image in [r["image"]])
    assert "records from 4 reviewed inspections" in printed

    again = _export(path, out)  # the same log exported again: the same split, no image copied twice
    assert ", 0 new images" in again and _records(out) == records


def test_the_distillation_tools_read_the_export(tmp_path, tiny_bundle):
    from tools.distill.dataset import read_jsonl

    path = write_station(
        tmp_path, tiny_bundle, plc={"enabled": False}, web={"enabled": True, "open_view": True, "users": USERS}
    )

    async def scenario(station, client, path):
        await station.inspect(1, part_id="Q0")
        row = (await client.get("/api/inspections")).json()["items"][0]
        qa = await login_headers(client, "qa")
        await client.post(
            f"/api/inspections/{row['id']}/disposition", json={"disposition": "confirmed_defect"}, headers=qa
        )

    run_web(path, scenario, with_file=True)
    out = tmp_path / "dataset"
    _export(path, out)
    read = [rec for name in ("train.jsonl", "holdout.jsonl") for rec in read_jsonl(out / name, load_masks=False)]
    assert len(read) == 3 and all(rec.image_path.is_file() for rec in read)
    assert {rec.kind for rec in read} == {"point", "yes_no"}

    # the fine-tune reads the same folder: its train side, and the provenance of both sides for the lineage
    from tools.distill.reviewed import read_export

    reviewed = read_export(out)
    summary = reviewed.summary
    assert (
        summary["train_records"] == len(reviewed.train) and summary["train_records"] + summary["holdout_records"] == 3
    )
    assert summary["stations"] == {"test-station": 3} and summary["reviewers"] == {"qa": 3}
    assert summary["inspections"] == 1 and summary["dispositions"] == {"confirmed_defect": 3}
    (model,) = summary["models"]
    assert len(model) == 64 and summary["corrected_records"] == 0


def test_an_uncertain_yes_no_check_called_a_false_reject_learns_the_expected_answer(tmp_path, tiny_bundle):
    """A yes/no check that failed as uncertain still answered "yes": the label is what the check
    expects (QA says the part is good), never the flip of what the model said."""
    path = write_station(
        tmp_path, tiny_bundle, plc={"enabled": False}, web={"enabled": True, "open_view": True, "users": USERS},
        recipes=[{"number": 1, "name": "label", "checks": [
            {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes",
             "min_margin": 1.0, "on_uncertain": "fail"}]}],  # every answer is uncertain: it fails
    )  # fmt: skip

    async def scenario(station, client, path):
        await station.inspect(1, part_id="U0")
        row = (await client.get("/api/inspections")).json()["items"][0]
        qa = await login_headers(client, "qa")
        await client.post(f"/api/inspections/{row['id']}/disposition", json={"disposition": "false_reject"}, headers=qa)
        return (await client.get(f"/api/inspections/{row['id']}")).json()["checks"][0]

    check = run_web(path, scenario, with_file=True)
    assert check["status"] == "fail" and check["reason"].startswith("uncertain:")
    out = tmp_path / "dataset"
    _export(path, out)
    (record,) = _records(out)
    assert record["answer"] is True and record["target"] == "Yes."
