"""The bundled demo student (models/demo-student): size, torch-free loading, and its report's
figures reproduced on a smaller evaluation."""

import json
import subprocess
import sys

import pytest

from ..support.paths import DEMO_STUDENT


def test_bundle_fits_in_25_mb():
    files = [p for p in DEMO_STUDENT.iterdir() if p.is_file()]
    assert (DEMO_STUDENT / "manifest.json").is_file()
    assert sum(p.stat().st_size for p in files) <= 25 * 1024 * 1024


def test_loads_and_answers_without_torch():
    from ..support.no_torch import BLOCK

    code = (
        BLOCK
        + f"""
from edge_inspect.sim import render_part
from edge_inspect.vlm import load_bundle

model = load_bundle({str(DEMO_STUDENT)!r})
image = model.encode(render_part(3).image, order="bgr")
print(model.point(image, "Point to the screws.").answer.count, model.ask_yes_no(image, "Is the label present?").answer)
assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
"""
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_smaller_evaluation_matches_the_report():
    pytest.importorskip("scipy", reason="evaluation needs the 'export' extra")
    from tools.distill.evaluate import BundlePredictor, evaluate_records, headline, sim_records

    report = json.loads((DEMO_STUDENT / "report.json").read_text())
    targets = {"defect_f1": 0.80, "screw_count_exact": 0.90, "label_accuracy": 0.97}  # what the student must reach
    assert all(report["headline"][name] >= floor for name, floor in targets.items()), report["headline"]
    seeds = range(report["evaluation_seeds"][0], report["evaluation_seeds"][0] + 60)
    figures = headline(evaluate_records(BundlePredictor(DEMO_STUDENT), sim_records(seeds)))
    # rates on the few good or defect-free parts among 60 are too coarse to compare
    compared = (
        "defect_f1",
        "defect_micro_f1",
        "screw_f1",
        "screw_count_exact",
        "label_accuracy",
        "label_missing_accuracy",
    )
    for name in (n for n in compared if n in report["headline"]):
        assert abs(figures[name] - report["headline"][name]) <= 0.12, (name, figures[name], report["headline"][name])
