"""The parts of a student's report that a fine-tune adds (docs/model-lifecycle.md, "Fine-tune"): the
data lineage (the parent version, the reviewed export and its provenance, replay, weighting, steps,
seeds), every check's figures before (the parent) and after on the same parts, and a new defect
kind's figures on parts that hold it.

A figure is flagged when it is worse than the parent's by more than ``tolerance`` (a rate that should
be low counts as worse when it rises). The acceptance gate (against production, with its own rules)
is another tool; these flags only help to read a run.
"""

from __future__ import annotations

import math
from typing import Any

# (check, figure, where in the metrics, higher is better)
FIGURES: list[tuple[str, str, tuple[str, ...], bool]] = [
    ("defects", "micro F1", ("pointing", "defects", "micro", "f1"), True),
    ("defects", "micro precision", ("pointing", "defects", "micro", "precision"), True),
    ("defects", "micro recall", ("pointing", "defects", "micro", "recall"), True),
    ("defects", "false-call rate", ("pointing", "defects", "false_call_rate"), False),
    ("defects", "escape rate", ("pointing", "defects", "escape_rate"), False),
    ("screws", "micro F1", ("pointing", "screws", "micro", "f1"), True),
    ("screws", "count exact", ("counting_exact", "screws"), True),
    ("holes", "micro F1", ("pointing", "holes", "micro", "f1"), True),
    ("label", "yes/no accuracy", ("yes_no_accuracy", "label"), True),
    ("label_missing", "yes/no accuracy", ("yes_no_accuracy", "label_missing"), True),
    ("station", "good parts rejected", ("station", "good_part_reject_rate"), False),
    ("station", "bad parts passed", ("station", "bad_part_pass_rate"), False),
]
DEFAULT_TOLERANCE = 0.02


def _get(metrics: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return float(value) if isinstance(value, int | float) else math.nan


def before_after(before: dict[str, Any], after: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> list[dict]:
    """One row per check and figure: the parent's value, this model's, the change and whether it is
    worse than the parent's by more than ``tolerance``."""
    rows = []
    for check, figure, path, higher in FIGURES:
        b, a = _get(before, path), _get(after, path)
        change = a - b
        worse = bool(change == change and (-change if higher else change) > tolerance)
        rows.append({"check": check, "figure": figure, "before": b, "after": a, "change": change, "worse": worse})
    return rows


def new_kind_figures(metrics: dict[str, Any], kind: str) -> dict[str, Any]:
    """Defect pointing on parts that hold ``kind``: its recall and the task's object-level figures."""
    d = metrics["pointing"].get("defects", {})
    by_kind = d.get("recall_by_kind", {}).get(kind, {})
    micro = d.get("micro", {})
    return {
        "kind": kind,
        "recall": by_kind.get("recall", math.nan),
        "objects": by_kind.get("objects", 0),
        "micro_precision": micro.get("precision", math.nan),
        "micro_recall": micro.get("recall", math.nan),
        "micro_f1": micro.get("f1", math.nan),
        "false_call_rate": d.get("false_call_rate", math.nan),
        "escape_rate": d.get("escape_rate", math.nan),
        "parts_with_objects": d.get("parts_with_objects", 0),
        "parts_without_objects": d.get("parts_without_objects", 0),
    }


def _v(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and v != v) else f"{v:.3f}"


def comparison_lines(rows: list[dict], tolerance: float, parent: str) -> list[str]:
    lines = [
        f"Every check on the same generated parts, the parent (`{parent}`) before and this model after; "
        f"**worse** marks a figure worse than the parent's by more than {tolerance}.",
        "",
        "| check | figure | before | after | change | |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        sign = "+" if r["change"] > 0 else ""
        change = "–" if r["change"] != r["change"] else f"{sign}{r['change']:.3f}"
        lines.append(
            f"| {r['check']} | {r['figure']} | {_v(r['before'])} | {_v(r['after'])} | {change} | "
            f"{'**worse**' if r['worse'] else ''} |"
        )
    return lines


def new_kind_lines(after: dict[str, Any], before: dict[str, Any] | None, seeds: range) -> list[str]:
    lines = [
        f"Defect pointing on generated parts whose defects are all `{after['kind']}` (seeds {seeds.start}–"
        f"{seeds.stop - 1}; the generator's own draw of 0–3 defects, so some parts are clean).",
        "",
        "| figure | before | after |" if before else "| figure | value |",
        "|---|---|---|" if before else "|---|---|",
    ]
    for key, name in (
        ("recall", f"recall, {after['kind']} ({after['objects']} objects)"),
        ("micro_precision", "micro precision"),
        ("micro_f1", "micro F1"),
        ("false_call_rate", f"false-call rate ({after['parts_without_objects']} clean parts)"),
        ("escape_rate", f"escape rate ({after['parts_with_objects']} parts with defects)"),
    ):
        lines.append(
            f"| {name} | {_v(before[key])} | {_v(after[key])} |" if before else f"| {name} | {_v(after[key])} |"
        )
    return lines


def lineage_lines(lineage: dict[str, Any]) -> list[str]:
    """The lineage as a QA engineer reads it: what the model was trained from, on what, how."""
    lines = []
    parent = lineage.get("parent")
    if parent:
        lines.append(f"- parent: version `{parent.get('version')}` (the bundle `{parent.get('bundle')}`)")
    export = lineage.get("export")
    if export:

        def listed(counts: dict[str, int], short: bool = False) -> str:
            return ", ".join(f"{k[:12] if short else k} ({v})" for k, v in counts.items()) or "–"

        lines += [
            f"- reviewed records: `{export['folder']}` — {export['train_records']} trained on (train.jsonl, "
            f"sha256 {export['train_sha256'][:12]}), {export['holdout_records']} held out and never trained on; "
            f"{export['inspections']} inspections, {export['images']} images, {export['corrected_records']} "
            "records with corrected points",
            f"- stations: {listed(export['stations'])}; reviewers: {listed(export['reviewers'])}",
            f"- labels made against model versions: {listed(export['models'], short=True)}; "
            f"dispositions: {listed(export['dispositions'])}; checks: {listed(export['checks'])}",
        ]
        if export.get("first"):
            lines.append(f"- inspected from {export['first']} to {export['last']}")
    records = lineage.get("records")
    if records:
        lines.append(f"- records: `{records['path']}` (sha256 {records['sha256'][:12]})")
    replay = lineage.get("replay")
    if replay:
        names = [
            "parts generated on the fly (the generator's tasks)" if s.get("generated") else
            f"`{s['path']}` ({s['records']} records, sha256 {s['sha256'][:12]})"
            for s in replay["sources"]
        ]  # fmt: skip
        lines.append(f"- replay: {replay['share']:.0%} of the examples, from {' and '.join(names)}")
    weighting = lineage.get("weighting")
    if weighting:
        lines.append(
            f"- weighting: a corrected record is drawn {weighting['corrected_weight']:g}× as often as a confirmed "
            f"one ({weighting['corrected_records']} corrected: {weighting['corrected_draw_share']:.0%} of the "
            "reviewed draws)"
        )
    drawn = lineage.get("drawn") or {}
    lines.append(
        f"- {lineage.get('steps')} steps of {lineage.get('batch')} examples, peak learning rate {lineage.get('lr')}, "
        f"seed {lineage.get('seed')} (generated parts from seed {lineage.get('generated_seeds_from')}); drawn: "
        + (", ".join(f"{k} {v}" for k, v in drawn.items()) or "–")
    )
    return lines
