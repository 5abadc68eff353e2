"""The gate's figures are the tools' figures: models/demo-student gated against itself through a real
model store and the appliance runtime gives, per check, on the same seeds, exactly what
``python -m tools.distill evaluate`` computed before the evaluation moved into edge_inspect/evaluation
(tests/data/evaluation_conformance.json, written by that evaluator at commit d6c58ff: 8 generated
parts, seeds 900000–900007, and the first 4 under each camera shift of the suite)."""

from __future__ import annotations

import json

from edge_inspect.commands.gate import GateSettings, run_gate
from edge_inspect.commands.gate_rules import check_figures
from edge_inspect.config import GateConfig
from edge_inspect.evaluation.shifts import SHIFT_SUITE
from edge_inspect.modelstore import ModelStore

from ..support.paths import DEMO_STUDENT, TEST_DATA

REFERENCE = json.loads((TEST_DATA / "evaluation_conformance.json").read_text())


def _figures(suite: dict, who: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in suite["rows"]:
        out.setdefault(row["check"], {"kind": row["kind"]})[row["figure"]] = row[who]
    return out


def test_the_gate_on_demo_student_equals_the_tools_evaluator(tmp_path):
    store = ModelStore(tmp_path / "data" / "models")
    version = store.add(DEMO_STUDENT, "test", alias="production").version
    first, stop = REFERENCE["seeds"]
    cfg = GateConfig(first_seed=first, shifts=list(SHIFT_SUITE), latency_parts=2, max_latency_ratio=100)
    settings = GateSettings(cfg, parts=stop - first, shift_parts=REFERENCE["shift_seeds"][1] - first)
    report = run_gate(version, version, settings, tmp_path / "data", [], "test")

    suites = {s["suite"]: s for s in report["suites"]}
    assert list(suites) == ["holdout", "generated", *(f"shift:{name}" for name in SHIFT_SUITE)]
    expected = {"generated": check_figures(REFERENCE["metrics"])}
    expected |= {f"shift:{name}": check_figures(REFERENCE["shifts"][name]) for name in SHIFT_SUITE}
    for key, figures in expected.items():
        for who in ("candidate", "production"):
            assert _figures(suites[key], who) == figures, (key, who)  # exact: counts and shares alike
    generated = _figures(suites["generated"], "candidate")
    assert (generated["defects"]["hits"], generated["defects"]["predictions"], generated["defects"]["objects"]) == (
        REFERENCE["metrics"]["pointing"]["defects"]["micro"]["hits"],
        REFERENCE["metrics"]["pointing"]["defects"]["micro"]["predictions"],
        REFERENCE["metrics"]["pointing"]["defects"]["micro"]["objects"],
    )
    assert suites["holdout"]["records"] == 0  # this store's station has no log: nothing reviewed
    assert report["passed"] and report["problems"] == []
    assert all(r["delta"] in (0, None) for s in report["suites"] for r in s["rows"])
    assert report["memory_mb"]["candidate"]["model_mb"] > 0 and report["latency_ms"]["candidate"]["parts"] == 2
