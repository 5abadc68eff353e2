"""The gate's rules with figures: each tolerance at its edge and one step past it, figures that cannot be
judged, the corrected cases' share, the budgets, and the one-line problems a failed gate names."""

from __future__ import annotations

import math

import pytest

from edge_inspect.commands.gate_rules import budget, check_figures, compare_suite, corrected_summary, verdict
from edge_inspect.config import GateConfig


def _point(f1, count, false_calls, escapes, **more):
    return {"kind": "point", "f1": f1, "count_exact": count, "false_call_rate": false_calls, "escape_rate": escapes,
            "precision": 0.9, "recall": 0.9, **more}  # fmt: skip


def _rows(candidate, production, cfg=None):
    rows = compare_suite(candidate, production, cfg or GateConfig())
    return {(r["check"], r["figure"]): r for r in rows}


def test_defaults_are_the_documented_ones():
    cfg = GateConfig()
    assert (cfg.max_f1_drop, cfg.max_count_drop, cfg.max_yes_no_drop) == (0.01, 0.01, 0.01)
    assert (cfg.max_false_call_rise, cfg.max_escape_rise, cfg.min_corrected_fixed) == (0.005, 0.005, 0.8)
    assert (cfg.max_latency_ratio, cfg.max_memory_ratio) == (1.2, 1.2)


def test_each_figure_may_be_worse_by_its_tolerance_and_no_more():
    production = {"defects": _point(0.80, 0.95, 0.010, 0.020), "label": {"kind": "yes_no", "accuracy": 0.99}}
    at_edge = {"defects": _point(0.79, 0.94, 0.015, 0.025), "label": {"kind": "yes_no", "accuracy": 0.98}}
    rows = _rows(at_edge, production)
    judged = [r for r in rows.values() if "tolerance" in r]
    assert len(judged) == 5 and all(r["ok"] for r in judged), judged
    assert rows[("defects", "f1")]["delta"] == pytest.approx(-0.01)
    assert rows[("defects", "precision")]["ok"] is None  # shown beside, not judged
    past = {"defects": _point(0.7899, 0.9399, 0.0151, 0.0251), "label": {"kind": "yes_no", "accuracy": 0.9799}}
    rows = _rows(past, production)
    assert [k for k, r in rows.items() if r["ok"] is False] == [
        ("defects", "f1"), ("defects", "count_exact"), ("defects", "false_call_rate"), ("defects", "escape_rate"),
        ("label", "accuracy"),
    ]  # fmt: skip


def test_better_is_always_fine_and_tolerances_come_from_the_config():
    production = {"defects": _point(0.80, 0.95, 0.02, 0.02)}
    better = {"defects": _point(0.95, 1.0, 0.0, 0.0)}
    assert all(r["ok"] is not False for r in _rows(better, production).values())
    lenient = GateConfig(max_f1_drop=0.2)
    worse = {"defects": _point(0.65, 0.95, 0.02, 0.02)}
    assert _rows(worse, production, lenient)[("defects", "f1")]["ok"] is True
    assert _rows(worse, production)[("defects", "f1")]["ok"] is False


def test_a_figure_one_side_cannot_measure_is_not_judged():
    production = {"screws": _point(0.9, 1.0, None, 0.0)}  # no screw-free parts: no false-call rate
    candidate = {"screws": _point(0.9, 1.0, None, 0.0), "new_check": _point(0.5, 0.5, 0.5, 0.5)}
    rows = _rows(candidate, production)
    assert rows[("screws", "false_call_rate")]["ok"] is None and rows[("screws", "false_call_rate")]["delta"] is None
    assert rows[("new_check", "f1")]["ok"] is None  # production has no such check to compare with


def test_check_figures_from_an_evaluation():
    metrics = {
        "pointing": {"defects": {"micro": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "hits": 2, "predictions": 4,
                                           "objects": 2}, "false_call_rate": 0.25, "escape_rate": math.nan, "images": 4}},
        "counting_exact": {"defects": 0.75}, "yes_no_accuracy": {"label": 1.0}, "yes_no": {"label": {"answers": 4}},
        "station": {"good_parts": 0, "bad_parts": 0},
    }  # fmt: skip
    figures = check_figures(metrics)
    assert figures["defects"]["escape_rate"] is None  # NaN: nothing to measure it on
    assert figures["defects"]["f1"] == pytest.approx(2 / 3) and figures["defects"]["count_exact"] == 0.75
    assert figures["label"] == {"kind": "yes_no", "accuracy": 1.0, "answers": 4}
    assert "recipe verdict" not in figures  # no part was asked all the recipe's questions


def _case(candidate, production):
    return {"inspection": 1, "check": "label", "fixed": {"candidate": candidate, "production": production}}


def test_corrected_cases_fixed_at_the_stated_share():
    cfg = GateConfig()  # 0.8
    four_of_five = corrected_summary([_case(True, False)] * 4 + [_case(False, False)], cfg)
    assert four_of_five["ok"] and four_of_five["share"]["candidate"] == pytest.approx(0.8)
    assert four_of_five["fixed"] == {"candidate": 4, "production": 0}
    three_of_five = corrected_summary([_case(True, False)] * 3 + [_case(False, True)] * 2, cfg)
    assert not three_of_five["ok"] and three_of_five["fixed"]["production"] == 2
    assert corrected_summary([], cfg)["ok"] and corrected_summary([], cfg)["share"]["candidate"] is None


def test_budgets_relative_to_production():
    assert budget(120.0, 100.0, 1.2)["ok"] and not budget(120.1, 100.0, 1.2)["ok"]
    assert budget(None, 100.0, 1.2)["ok"] is None  # not measured: not judged
    assert budget(50.0, 100.0, 1.2)["ratio"] == 0.5


def test_verdict_names_every_broken_rule_in_one_line_each():
    production = {"defects": _point(0.80, 0.95, 0.0, 0.0)}
    candidate = {"defects": _point(0.70, 0.95, 0.0, 0.1)}
    suites = [{"title": "Generated parts", "rows": compare_suite(candidate, production, GateConfig())}]
    corrected = corrected_summary([_case(False, False)], GateConfig())
    costs = {"latency p95": budget(150.0, 100.0, 1.2), "memory": budget(100.0, 100.0, 1.2)}
    problems = verdict(suites, corrected, costs)
    assert problems == [
        "Generated parts: defects f1 dropped by 0.1000 (0.8000 → 0.7000; tolerance 0.01)",
        "Generated parts: defects escape rate rose by 0.1000 (0.0000 → 0.1000; tolerance 0.005)",
        "corrected cases: 0 of 1 right (0.00, at least 0.8 needed)",
        "latency p95: 1.50 × production's (budget 1.2 ×)",
    ]
    assert verdict([{"title": "x", "rows": compare_suite(production, production, GateConfig())}],
                   corrected_summary([], GateConfig()), {"memory": budget(1.0, 1.0, 1.2)}) == []  # fmt: skip
