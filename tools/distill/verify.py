"""The accuracy gate: does a candidate bundle (quantized, rebuilt) decide like the reference?

Both bundles run through the appliance runtime on the same labelled set (generated parts, or a
plant's records.jsonl). Reported: pointing F1 per task, screw-count accuracy, yes/no agreement
between the two bundles and the drift of the yes/no margin. The gate fails (exit 1) when an F1 or
counting drop exceeds its limit or yes/no agreement falls below its floor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .dataset import Record, read_jsonl
from .evaluate import BundlePredictor, evaluate_records, sim_records


@dataclass(frozen=True)
class Limits:
    max_f1_drop: float = 0.01
    max_count_drop: float = 0.01
    min_yes_no_agreement: float = 0.99


def _yes_no_pairs(ref: BundlePredictor, cand: BundlePredictor, records: list[Record]) -> list[tuple[float, float]]:
    """(reference p_yes, candidate p_yes) for every yes/no record."""
    pairs = []
    for rec in records:
        if rec.kind != "yes_no":
            continue
        rgb = rec.rgb() if rec.image is None else rec.image
        pairs.append(
            (
                ref.model.ask_yes_no(ref.model.encode(rgb), rec.prompt).p_yes,
                cand.model.ask_yes_no(cand.model.encode(rgb), rec.prompt).p_yes,
            )
        )
    return pairs


def verify(reference: str | Path, candidate: str | Path, records: list[Record], limits: Limits) -> dict:
    ref, cand = BundlePredictor(reference), BundlePredictor(candidate)
    ref_metrics = evaluate_records(ref, records)
    cand_metrics = evaluate_records(cand, records)
    pairs = _yes_no_pairs(ref, cand, records)
    agree = float(np.mean([(a >= 0.5) == (b >= 0.5) for a, b in pairs])) if pairs else 1.0
    drift = [abs(abs(2 * a - 1) - abs(2 * b - 1)) for a, b in pairs]
    problems = []
    rows = []
    for task, r in ref_metrics["pointing"].items():
        c = cand_metrics["pointing"].get(task, {"f1": 0.0})
        drop = r["f1"] - c["f1"]
        rows.append(
            {
                "metric": f"{task} pointing F1",
                "reference": r["f1"],
                "candidate": c["f1"],
                "drop": drop,
                "limit": limits.max_f1_drop,
            }
        )
        if drop > limits.max_f1_drop:
            problems.append(f"{task} pointing F1 dropped {drop:.3f} (limit {limits.max_f1_drop})")
    for task, r in ref_metrics["counting_exact"].items():
        c = cand_metrics["counting_exact"].get(task, 0.0)
        rows.append(
            {
                "metric": f"{task} count accuracy",
                "reference": r,
                "candidate": c,
                "drop": r - c,
                "limit": limits.max_count_drop,
            }
        )
        if r - c > limits.max_count_drop:
            problems.append(f"{task} count accuracy dropped {r - c:.3f} (limit {limits.max_count_drop})")
    for task, r in ref_metrics["yes_no_accuracy"].items():
        c = cand_metrics["yes_no_accuracy"].get(task, 0.0)
        rows.append({"metric": f"{task} yes/no accuracy", "reference": r, "candidate": c, "drop": r - c, "limit": None})
    if agree < limits.min_yes_no_agreement:
        problems.append(f"yes/no agreement {agree:.3f} below {limits.min_yes_no_agreement}")
    return {
        "reference": str(reference),
        "candidate": str(candidate),
        "records": len(records),
        "rows": rows,
        "yes_no_agreement": agree,
        "yes_no_questions": len(pairs),
        "margin_drift": {
            "mean": float(np.mean(drift)) if drift else 0.0,
            "max": float(np.max(drift)) if drift else 0.0,
        },
        "reference_metrics": ref_metrics,
        "candidate_metrics": cand_metrics,
        "limits": asdict(limits),
        "passed": not problems,
        "problems": problems,
    }


def report_text(result: dict) -> str:
    lines = [
        f"verify {result['candidate']} against {result['reference']} on {result['records']} records",
        f"{'metric':<28} {'reference':>9} {'candidate':>9} {'drop':>7} {'limit':>6}",
    ]
    for r in result["rows"]:
        limit = "" if r["limit"] is None else f"{r['limit']:.3f}"
        lines.append(f"{r['metric']:<28} {r['reference']:9.3f} {r['candidate']:9.3f} {r['drop']:7.3f} {limit:>6}")
    lines.append(
        f"yes/no agreement {result['yes_no_agreement']:.3f} over {result['yes_no_questions']} questions "
        f"(floor {result['limits']['min_yes_no_agreement']}); margin drift mean "
        f"{result['margin_drift']['mean']:.4f}, max {result['margin_drift']['max']:.4f}"
    )
    lines.append("PASSED" if result["passed"] else "FAILED: " + "; ".join(result["problems"]))
    return "\n".join(lines)


def run_verify(
    reference: str, candidate: str, data: str | None, seeds: range, limits: Limits, json_path: str | None
) -> int:
    records = read_jsonl(Path(data)) if data else sim_records(seeds)
    result = verify(reference, candidate, records, limits)
    print(report_text(result))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1
