"""The model's whole loop on a live station, small: benchmarks/lifecycle_e2e.py with a few parts and two
training steps (docs/model-lifecycle.md, "End to end, measured"). It checks that the chain connects —
QA's corrections through the web API become the exported records, the fine-tuned bundle enters the
store as candidate with production as its parent, the gate writes its report, the shadow's verdicts are
logged, and the promote swaps the running station's model — not that the model improved."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the fine-tune needs the 'export' extra")

from ..support.paths import DEMO_STUDENT, REPO_ROOT  # noqa: E402

SMALL = [
    "--parts", "10", "--review-parts", "6", "--train-steps", "2", "--batch", "2", "--train-eval-parts", "1", "--eval-parts", "2",
    "--new-kind-parts", "2", "--gate-parts", "2", "--shift-parts", "0", "--latency-parts", "2",
    "--latency-repeats", "1", "--shadow-parts", "3", "--after-parts", "3", "--force-promote", "--threads", "1",
]  # fmt: skip


def test_the_loop_runs_from_the_line_to_a_new_production(tmp_path):
    work, out = tmp_path / "work", tmp_path / "e2e.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "lifecycle_e2e.py"), *SMALL, "--work", str(work),
         "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(out.read_text())

    # QA reviewed through the web API, from the truth of the very frames the station inspected
    review, export = r["review"], r["export"]
    assert review["parts"] == 6 and review["frame_mismatches"] == 0 and review["requests"] > 6
    assert review["corrected_checks"] > 0  # the demo student misses chips: QA adds them
    # every correction made is one exported record marked corrected; every labelled part is exported
    assert export["corrected_records"] == review["corrected_checks"]
    assert export["inspections"] == review["labelled"]
    lines = [json.loads(x) for f in ("train.jsonl", "holdout.jsonl") for x in open(work / "reviewed" / f)]
    assert len(lines) == export["records"] and all(x["source"]["reviewer"] == "qa" for x in lines)

    # the candidate is in the store with production as its parent; the gate's report is in its record
    parent, candidate = r["store"]["parent"], r["candidate"]
    assert parent == hashlib.sha256((DEMO_STUDENT / "manifest.json").read_bytes()).hexdigest() != candidate
    assert r["store"]["versions"][candidate]["parent"] == parent
    version = json.loads((work / "data" / "models" / "versions" / candidate / "version.json").read_text())
    assert version["gate"]["against"] == parent and version["gate"]["suites"]
    assert r["gate"]["passed"] is version["gate"]["passed"]

    # the shadow judged live parts, logged beside production's
    assert r["shadow"]["shadowed"] == 3 and r["shadow"]["end_reason"]
    db = sqlite3.connect(work / "data" / "inspections.db")
    (rows,) = db.execute("select count(*) from shadow_results where version = ?", [candidate]).fetchone()
    db.close()
    assert rows == 3 and r["shadow"]["candidate_on_shadowed"]["parts"] == 3

    # promote changed production, and the station judges the next parts with it
    assert r["store"]["aliases"]["production"] == candidate
    promote = [h for h in r["store"]["history"] if h["action"] == "promote" and h["alias"] == "production"][-1]
    assert promote["version"] == candidate and (promote["gate"] or promote["forced"])
    assert r["promoted"]["done"] and candidate.startswith(r["promoted"]["running_after"])
    assert r["line_after"]["parts"] == 3
    phases = [p["phase"] for p in r["phases"]]
    assert phases[0] == "station start" and phases[-1] == "line (new production)" and len(phases) == 12
    assert all(p["seconds"] >= 0 for p in r["phases"])
