"""The acceptance gate's figures and rules (docs/model-lifecycle.md, "The gate"): pure functions over
the evaluation's results, no model and no files.

Per suite (the reviewed holdout, generated parts, each camera shift) and per check: object-level
precision, recall and F1, count exact, false-call and escape rates per part (pointing checks), yes/no
accuracy, and the demo recipe's verdict rates where a part was asked all its questions. A figure is
judged where both versions have it: the candidate may be worse than production by at most its
tolerance (``model.gate``). Then the corrected cases (reviewed holdout records on which the model's
check went the wrong way) must be right at ``min_corrected_fixed``, and latency and memory must stay
within their budgets relative to production."""

from __future__ import annotations

import math
from typing import Any

from ..config import GateConfig

# figure → (worse when it "drop"s or "rise"s, the tolerance's key in model.gate)
JUDGED: dict[str, tuple[str, str]] = {
    "f1": ("drop", "max_f1_drop"),
    "count_exact": ("drop", "max_count_drop"),
    "accuracy": ("drop", "max_yes_no_drop"),
    "false_call_rate": ("rise", "max_false_call_rise"),
    "escape_rate": ("rise", "max_escape_rise"),
    "good_part_reject_rate": ("rise", "max_false_call_rise"),
    "bad_part_pass_rate": ("rise", "max_escape_rise"),
}
SHOWN = ("precision", "recall", "hits", "predictions", "objects", "parts", "answers", "good_parts", "bad_parts")
EPS = 1e-12  # a figure exactly at its tolerance passes (float sums of shares)


def _number(value: Any) -> float | None:
    """A figure as JSON keeps it: None where it is not a number (no parts to measure it on)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def check_figures(metrics: dict) -> dict[str, dict[str, Any]]:
    """check → its figures, from ``evaluate_records``' result."""
    checks: dict[str, dict[str, Any]] = {}
    for task, s in metrics["pointing"].items():
        m = s["micro"]
        checks[task] = {
            "kind": "point",
            "precision": _number(m["precision"]), "recall": _number(m["recall"]), "f1": _number(m["f1"]),
            "hits": m["hits"], "predictions": m["predictions"], "objects": m["objects"],
            "count_exact": _number(metrics["counting_exact"].get(task)),
            "false_call_rate": _number(s["false_call_rate"]), "escape_rate": _number(s["escape_rate"]),
            "parts": s["images"],
        }  # fmt: skip
    for task, accuracy in metrics["yes_no_accuracy"].items():
        answers = metrics.get("yes_no", {}).get(task, {}).get("answers")
        checks[task] = {"kind": "yes_no", "accuracy": _number(accuracy), "answers": answers}
    station = metrics.get("station") or {}
    if station.get("good_parts", 0) + station.get("bad_parts", 0):
        checks["recipe verdict"] = {
            "kind": "recipe",
            "good_part_reject_rate": _number(station["good_part_reject_rate"]),
            "bad_part_pass_rate": _number(station["bad_part_pass_rate"]),
            "good_parts": station["good_parts"], "bad_parts": station["bad_parts"],
        }  # fmt: skip
    return checks


def compare_suite(candidate: dict[str, dict], production: dict[str, dict], cfg: GateConfig) -> list[dict[str, Any]]:
    """One row per check and figure: both values, the delta (candidate − production), the tolerance
    and whether it holds (None: shown, not judged)."""
    rows = []
    for check in sorted(set(candidate) | set(production), key=lambda c: (c == "recipe verdict", c)):
        c, p = candidate.get(check, {}), production.get(check, {})
        kind = c.get("kind") or p.get("kind")
        for figure in (*JUDGED, *SHOWN):
            if figure not in c and figure not in p:
                continue
            cv, pv = c.get(figure), p.get(figure)
            row: dict[str, Any] = {"check": check, "kind": kind, "figure": figure, "candidate": cv, "production": pv}
            row["delta"] = cv - pv if cv is not None and pv is not None else None
            if figure in JUDGED:
                sense, key = JUDGED[figure]
                tolerance = float(getattr(cfg, key))
                row["tolerance"], row["worse_when"] = tolerance, sense
                if row["delta"] is None:
                    row["ok"] = None  # one side has nothing to measure it on: not judged
                else:
                    worse = -row["delta"] if sense == "drop" else row["delta"]
                    row["ok"] = worse <= tolerance + EPS
            else:
                row["ok"] = None
            rows.append(row)
    return rows


def corrected_summary(cases: list[dict[str, Any]], cfg: GateConfig) -> dict[str, Any]:
    """The holdout's corrected cases (each: ``fixed`` by candidate and production): the share each
    gets right; passes at ``min_corrected_fixed`` (no cases: nothing to hold, passes)."""
    n = len(cases)
    fixed = {who: sum(bool(c["fixed"][who]) for c in cases) for who in ("candidate", "production")}
    share = {who: (fixed[who] / n if n else None) for who in fixed}
    ok = True if not n else (share["candidate"] or 0.0) + EPS >= cfg.min_corrected_fixed
    return {"cases": n, "fixed": fixed, "share": share, "min_share": cfg.min_corrected_fixed, "ok": ok, "items": cases}


def budget(candidate: float | None, production: float | None, ratio: float) -> dict[str, Any]:
    """A cost (latency, memory) within ``ratio`` × production's."""
    if candidate is None or production is None or production <= 0:
        return {"candidate": candidate, "production": production, "ratio": None, "max_ratio": ratio, "ok": None}
    r = candidate / production
    return {"candidate": candidate, "production": production, "ratio": r, "max_ratio": ratio, "ok": r <= ratio + EPS}


def verdict(suites: list[dict[str, Any]], corrected: dict[str, Any], costs: dict[str, dict]) -> list[str]:
    """Every rule that does not hold, one line each; none: the gate passes."""
    problems = []
    for suite in suites:
        for row in suite["rows"]:
            if row["ok"] is False:
                sense = "dropped" if row["worse_when"] == "drop" else "rose"
                problems.append(
                    f"{suite['title']}: {row['check']} {row['figure'].replace('_', ' ')} {sense} by "
                    f"{abs(row['delta']):.4f} ({row['production']:.4f} → {row['candidate']:.4f}; "
                    f"tolerance {row['tolerance']})"
                )
    if not corrected["ok"]:
        problems.append(
            f"corrected cases: {corrected['fixed']['candidate']} of {corrected['cases']} right "
            f"({corrected['share']['candidate']:.2f}, at least {corrected['min_share']} needed)"
        )
    for name, cost in costs.items():
        if cost["ok"] is False:
            problems.append(f"{name}: {cost['ratio']:.2f} × production's (budget {cost['max_ratio']} ×)")
    return problems
