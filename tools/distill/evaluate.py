"""Evaluate a bundle (ONNX, via edge_inspect.vlm) or a checkpoint (transformers) on generated parts
or on a labelled JSONL set: the figures are edge_inspect.evaluation's (one copy, shared with the
station's model gate; its docstring says what each one counts); this module adds the checkpoint
predictor for a model still in training."""

from __future__ import annotations

import json
from pathlib import Path

from edge_inspect.evaluation.evaluate import (
    MIN_MASS,
    STATION_TASKS,
    UNCERTAIN_MARGIN,
    BundlePredictor,
    Predictor,
    evaluate_records,
    headline,
    robustness,
    shift_row,
    station_rates,
)
from edge_inspect.evaluation.records import sim_records
from edge_inspect.evaluation.shifts import SHIFTS
from edge_inspect.sim import ALL_DEFECT_KINDS
from tools.molmo2.predictor import TorchPredictor

__all__ = [
    "MIN_MASS",
    "STATION_TASKS",
    "UNCERTAIN_MARGIN",
    "BundlePredictor",
    "Predictor",
    "SHIFTS",
    "TorchPredictor",
    "evaluate_records",
    "headline",
    "metric_lines",
    "robustness",
    "robustness_lines",
    "shift_row",
    "sim_records",
    "station_rates",
    "write_report",
]


def _pct(v) -> str:
    return "–" if v is None or v != v else f"{100 * v:.1f}%"


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def metric_lines(metrics: dict) -> list[str]:
    """Markdown tables of an evaluation: pointing (micro with interval, per-image mean), defects by
    kind and by count, station rates, counting, yes/no."""
    lines = [
        "| task | micro precision | micro recall | micro F1 (95% CI) | per-image mean F1 | objects | "
        "median px error (matched) | tokens per point |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, s in metrics["pointing"].items():
        m = s["micro"]
        ci = m.get("ci95", {}).get("f1")
        ci_text = f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else ""
        lines.append(
            f"| {task} | {_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])}{ci_text} | {_f(s['f1'])} | "
            f"{m['objects']} | {_f(s.get('median_px_error'), 1)} | {_f(s.get('tokens_per_point'), 1)} |"
        )
    d = metrics["pointing"].get("defects")
    if d:
        lines += [
            "",
            "| defects | value |",
            "|---|---|",
            f"| false-call rate (defect-free parts with a defect point) | {_pct(d['false_call_rate'])} of "
            f"{d['parts_without_objects']} |",
            f"| escape rate (parts with defects and no defect point) | {_pct(d['escape_rate'])} of "
            f"{d['parts_with_objects']} |",
            f"| median px error of matched points: hits / misses | {_f(d.get('median_px_error_hits'), 1)} / "
            f"{_f(d.get('median_px_error_misses'), 1)} |",
        ]
        lines += [
            f"| recall, {k} | {_f(v['recall'])} ({v['objects']} objects) |"
            for k, v in d["recall_by_kind"].items()
            if k in ALL_DEFECT_KINDS
        ]
        lines += [
            f"| recall on parts with {n} defect{'s' if n != '1' else ''} | {_f(v['recall'])} ({v['objects']} objects) |"
            for n, v in d["recall_by_count"].items()
        ]
    st = metrics.get("station")
    if st and st["good_parts"] + st["bad_parts"]:
        lines += [
            "",
            "| station (demo recipe: no defect, 4 screws, label present) | value |",
            "|---|---|",
            f"| good parts rejected | {_pct(st['good_part_reject_rate'])} of {st['good_parts']} |",
            f"| bad parts passed | {_pct(st['bad_part_pass_rate'])} of {st['bad_parts']} |",
        ]
    lines += ["", "| counting / yes-no | value |", "|---|---|"]
    lines += [f"| {t} count exact | {_f(v)} |" for t, v in metrics["counting_exact"].items()]
    sm = metrics.get("screws_missing")
    if sm:
        lines += [
            f"| screw count exact on parts missing screws | {_f(sm['count_exact'])} ({sm['parts']} parts) |",
            f"| empty holes called a screw | {_pct(sm['empty_holes_called_screw'])} of {sm['empty_holes']} |",
        ]
    for t, v in metrics["yes_no_accuracy"].items():
        y = metrics.get("yes_no", {}).get(t)
        extra = (
            f"; median margin {_f(y['median_margin'])}, margin < {UNCERTAIN_MARGIN}: {_pct(y['uncertain_share'])}, "
            f"median mass {_f(y['median_mass'])}, mass < {MIN_MASS}: {_pct(y['low_mass_share'])}"
            if y
            else ""
        )
        lines.append(f"| {t} yes/no accuracy | {_f(v)}{extra} |")
    return lines


def robustness_lines(rows: dict[str, dict]) -> list[str]:
    lines = [
        "| shift | defect micro F1 | defect recall | false calls | escapes | screw count | label | label missing | "
        "good parts rejected | bad parts passed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {_f(r['defect_micro_f1'])} | {_f(r['defect_micro_recall'])} | "
            f"{_pct(r['false_call_rate'])} | {_pct(r['escape_rate'])} | {_f(r['screw_count_exact'])} | "
            f"{_f(r['label_accuracy'])} | {_f(r['label_missing_accuracy'])} | "
            f"{_pct(r['good_part_reject_rate'])} of {r['good_parts']} | "
            f"{_pct(r['bad_part_pass_rate'])} of {r['bad_parts']} |"
        )
    return lines


def write_report(metrics: dict, out_json: Path, title: str, details: dict, shifts: dict | None = None) -> Path:
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(
        json.dumps({"metrics": metrics, "headline": headline(metrics), "robustness": shifts, **details}, indent=2)
        + "\n"
    )
    md = out_json.with_suffix(".md")
    lines = [
        f"# {title}",
        "",
        *metric_lines(metrics),
        "",
        f"Malformed answers: {metrics['malformed_answers']}. Hit rule: Hungarian matching by pixel distance, "
        f"a matched point is a hit inside the object's mask dilated by {metrics['dilate_px']} px.",
        "",
    ]
    if shifts:
        lines += ["## Robustness", "", *robustness_lines(shifts), ""]
    lines += [f"- {k}: {v}" for k, v in details.items()]
    md.write_text("\n".join(lines) + "\n")
    return md
