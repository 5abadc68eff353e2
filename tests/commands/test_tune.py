"""`edge-inspect tune` on generated parts with known ground truth: rates per check, a sweep of the
yes/no margin and the defect limit, recommendations, JSON and plots; labels.csv too."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2

from edge_inspect.sim import render_part

from ..support.paths import REPO_ROOT


def _good(part) -> bool:
    return not part.defects and len(part.screws) == 4 and part.label != "absent"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "tune", str(REPO_ROOT / "edge_inspect/demo_station.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_tune_on_good_and_bad_parts(tmp_path):
    labelled = tmp_path / "labelled"
    truth = {}
    for seed in range(700000, 700030):
        part = render_part(seed, 320, 240)
        kind = "good" if _good(part) else "bad"
        (labelled / kind).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(labelled / kind / f"{seed}.png"), part.image)
        truth[seed] = kind
    assert {"good", "bad"} <= set(truth.values())
    out = tmp_path / "out"
    result = _run("--labelled", str(labelled), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "tune.json").read_text())
    assert report["images"] == 30 and report["good"] == sum(v == "good" for v in truth.values())
    checks = report["checks"]
    assert set(checks) == {"surface", "screws", "label"}
    assert checks["label"]["parameter"] == "min_margin" and len(checks["label"]["sweep"]) == 20
    assert checks["surface"]["parameter"] == "max" and checks["surface"]["current"]["setting"] == 0
    screws = checks["screws"]  # a count check: expected swept over the counts seen, 4 recommended
    assert screws["parameter"] == "expected" and screws["current"]["setting"] == 4
    assert len(screws["sweep"]) >= 3 and screws["recommended"]["setting"] == 4, screws["recommended"]
    assert screws["counted_good"]["min"] <= 4 <= screws["counted_good"]["max"]
    assert "None" not in result.stdout and "good parts counted" in result.stdout
    for entry in checks.values():
        for row in entry["sweep"]:
            for key in ("false_reject", "escape"):
                assert row[key] is None or 0.0 <= row[key] <= 1.0
        best, now = entry["recommended"], entry["current"]
        assert (best["escape"] or 0) <= (now["escape"] or 0)  # never recommends more escapes
        picture = cv2.imread(entry["plot"])
        assert Path(entry["plot"]).is_file() and picture.shape == (360, 640, 3)
        inside = picture[52:308, 52:588]  # the plot's area: curves drawn in it (blue and red), not empty
        assert int((inside != 255).any(axis=2).sum()) > 200, entry["parameter"]
    # a defect limit of 5 lets bad parts through that a limit of 0 rejects
    sweep = {r["setting"]: r for r in checks["surface"]["sweep"]}
    assert max(sweep) >= 1 and sweep[max(sweep)]["escape"] >= sweep[0]["escape"]
    assert "recommended" in result.stdout and "surface" in result.stdout


def test_tune_with_per_check_labels_and_a_bad_label_file(tmp_path):
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    rows = []
    for seed in range(710000, 710012):
        part = render_part(seed, 320, 240)
        cv2.imwrite(str(labelled / f"{seed}.png"), part.image)
        rows.append((f"{seed}.png", "label", "pass" if part.label != "absent" else "fail"))
        rows.append((f"{seed}.png", "screws", "pass" if len(part.screws) == 4 else "fail"))
    with open(labelled / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "check", "expected"), *rows])
    result = _run("--labelled", str(labelled), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "tune.json").read_text())
    label = report["checks"]["label"]["current"]
    assert label["good"] + label["bad"] == 12  # every image labelled for this check
    with open(labelled / "labels.csv", "a") as f:
        f.write("missing.png,label,pass\n")
    bad = _run("--labelled", str(labelled), "--out", str(tmp_path / "out2"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "labels.csv:26: image" in bad.stderr
