"""`edge-inspect try`: a recipe on image files with the bundled student — overlays, table, JSON;
bad images and unknown recipes reported in one line each while the rest go on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

from edge_inspect.sim import render_part

from ..support.paths import REPO_ROOT


def test_try_on_generated_parts_and_bad_input(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    parts = {}
    for seed in (0, 1, 2, 3):
        part = render_part(seed, 320, 240)
        cv2.imwrite(str(images / f"part{seed}.png"), part.image)
        parts[f"part{seed}.png"] = part
    (images / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_inspect.cli",
            "try",
            str(REPO_ROOT / "edge_inspect/demo_station.yaml"),
            str(images),
            "--recipe",
            "1",
            "--recipe",
            "7",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert any("recipe 7 is not configured" in e for e in errors)
    assert any("broken.png: not an image" in e for e in errors)
    report = json.loads((out / "try.json").read_text())
    assert len(report["results"]) == 4
    header = result.stdout.splitlines()[0].split()
    assert header == ["image", "recipe", "check", "answer", "points", "status", "verdict"]
    agree = 0
    for r in report["results"]:
        shape = cv2.imread(r["overlay"]).shape  # the frame and the legend strip under it
        assert Path(r["overlay"]).is_file() and shape[1:] == (320, 3) and 240 < shape[0] < 300, shape
        assert [c["name"] for c in r["checks"]] == ["surface", "screws", "label"]
        part = parts[Path(r["image"]).name]
        screws = next(c for c in r["checks"] if c["name"] == "screws")
        agree += screws["counted"] == len(part.screws)
    assert agree >= 3, agree  # the student counts screws right on ~98% of parts (models/demo-student/REPORT.md)
    assert sum(1 for line in result.stdout.splitlines() if line.startswith("part")) == 12  # 4 images × 3 checks


def test_when_nothing_ran_only_the_errors_are_printed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "part.png"), render_part(0, 320, 240).image)
    result = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "try", str(REPO_ROOT / "edge_inspect/demo_station.yaml"), str(images),
         "--recipe", "7", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.strip().splitlines() == ["edge-inspect: error: recipe 7 is not configured (recipes: 1)"], (
        result.stderr
    )
