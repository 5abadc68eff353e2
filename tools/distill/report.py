"""The student's report: evaluation figures against the acceptance bars, the robustness suite,
seeds, training time, learning curve, the prompts the student understands, and the exact commands
that reproduce it. Written next to the bundle (models/demo-student/REPORT.md, report.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from edge_inspect.evaluation.shifts import SHIFT_SUITE
from tools.export.onnx_bundle import LINEAGE_FILE

from .evaluate import headline, metric_lines, robustness_lines
from .finetune_report import comparison_lines, lineage_lines, new_kind_lines
from .tasks import PHRASINGS, TASKS

# The demo student's acceptance bars: (headline figure, "min" or "max", bar).
BARS = [
    ("defect_micro_f1", "min", 0.80), ("scratch_recall", "min", 0.70), ("screw_count_exact", "min", 0.98),
    ("label_accuracy", "min", 0.99), ("false_call_rate", "max", 0.01), ("bad_part_pass_rate", "max", 0.005),
    ("label_missing_accuracy", "min", 0.97),
]  # fmt: skip
SHIFT_BARS = SHIFT_SUITE  # the camera shifts held to SHIFT_LIMITS: the same suite the gate runs
SHIFT_LIMITS = {"good_part_reject_rate": 0.05, "bad_part_pass_rate": 0.01}


def learning_curve(run_dir: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval" in r]
    return losses, evals


def earlier_training(config: dict) -> dict | None:
    """The training behind the bundle a run started from (``--init-from``), from that bundle's
    report.json: steps, minutes, CPU minutes and its validation curve; None for a run from scratch
    or a source bundle without a report."""
    source = config.get("init_from")
    path = Path(source) / "report.json" if source else None
    if path is None or not path.is_file():
        return None
    report = json.loads(path.read_text())
    training = report.get("training", {})
    return {
        "bundle": source,
        "steps": training.get("steps", 0),
        "minutes": training.get("minutes", 0.0),
        "cpu_minutes": training.get("cpu_minutes"),
        "evaluations": report.get("learning_curve", {}).get("evaluations", []),
    }


def bar_rows(metrics: dict, shifts: dict | None) -> list[dict]:
    """Each bar with the measured figure and whether it is met (a figure that is not a number is not met)."""
    h = headline(metrics)
    rows = []
    for name, sense, bar in BARS:
        v = h.get(name, math.nan)
        rows.append(
            {
                "figure": name,
                "value": v,
                "bar": f"{'≥' if sense == 'min' else '≤'} {bar}",
                "met": bool(v == v and (v >= bar if sense == "min" else v <= bar)),
            }
        )
    measured = shifts or {}
    for shift in SHIFT_BARS if measured else []:
        for name, limit in SHIFT_LIMITS.items():
            v = measured.get(shift, {}).get(name, math.nan)
            rows.append(
                {"figure": f"{shift}: {name}", "value": v, "bar": f"≤ {limit}", "met": bool(v == v and v <= limit)}
            )
    return rows


def _v(v) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def write_report(
    run_dir: Path,
    bundle: Path,
    metrics: dict,
    seeds: range,
    commands: list[str],
    latency_ms: float | None = None,
    notes: list[str] | None = None,
    shifts: dict | None = None,
    shift_seeds: range | None = None,
    cpu_minutes: float | None = None,
    comparison: dict | None = None,
    new_kind: dict | None = None,
) -> Path:
    """``comparison``: {"rows": finetune_report.before_after(...), "tolerance", "parent"}; ``new_kind``:
    {"after": new_kind_figures(...), "before": the parent's or None, "seeds": [start, stop]}."""
    losses, evals = learning_curve(run_dir)
    config = json.loads((run_dir / "train_config.json").read_text())
    lineage_path = run_dir / LINEAGE_FILE
    lineage = json.loads(lineage_path.read_text()) if lineage_path.is_file() else None
    h = headline(metrics)
    size_mb = sum(p.stat().st_size for p in bundle.iterdir() if p.is_file()) / 1e6
    minutes = max((r["minutes"] for r in losses + evals), default=0.0)  # wall clock, all phases
    steps = max((r["step"] for r in losses), default=0)
    earlier = earlier_training(config)
    if cpu_minutes is None:  # the process CPU time kept by train (all threads), where the log has it
        cpu_minutes = max((r.get("cpu_minutes", 0.0) for r in losses), default=0.0) or None
        if cpu_minutes is not None and earlier:
            cpu_minutes += earlier["cpu_minutes"] or 0.0
    origin = "trained from scratch on generated parts"
    if earlier:  # a run started from a bundle: its steps and time continue the earlier training's
        evals = [
            *earlier["evaluations"],
            *({**e, "step": e["step"] + earlier["steps"], "minutes": e["minutes"] + earlier["minutes"]} for e in evals),
        ]
        origin = (
            f"trained from scratch on generated parts; the last {steps} steps continued from the bundle "
            f"`{earlier['bundle']}` (its weights, a new optimizer), whose report.json gives the earlier phases"
        )
        if lineage and lineage.get("export"):
            origin = (
                f"trained from scratch on generated parts, then fine-tuned for its last {steps} steps from the bundle "
                f"`{earlier['bundle']}` (its weights, a new optimizer; its report.json gives the earlier phases) on a "
                "station's reviewed records mixed with replay (Data lineage, below)"
            )
        steps += earlier["steps"]
        minutes += earlier["minutes"]
    elif config.get("init_from"):
        origin = (
            f"continued for {steps} steps from the bundle `{config['init_from']}`, whose training is not counted "
            "here (it has no report.json)"
        )
    bars = bar_rows(metrics, shifts)
    report = {
        "headline": h, "metrics": metrics, "evaluation_seeds": [seeds.start, seeds.stop],
        "robustness": shifts, "robustness_seeds": [shift_seeds.start, shift_seeds.stop] if shift_seeds else None,
        "bars": bars, "prompts": PHRASINGS,
        "training": {"steps": steps, "minutes": minutes, "cpu_minutes": cpu_minutes, "config": config,
                     "earlier": {k: v for k, v in earlier.items() if k != "evaluations"} if earlier else None},
        "learning_curve": {"loss": losses[::10], "evaluations": evals}, "bundle_mb": round(size_mb, 2),
        "cpu_latency_ms_per_image": latency_ms, "commands": commands, "notes": notes or [],
        "lineage": lineage, "before_after": comparison, "new_kind": new_kind,
    }  # fmt: skip
    (bundle / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    sv = config["shape_values"]
    fine_tune = bool(lineage and lineage.get("export"))
    lines = [
        "# Fine-tuned student: evaluation report" if fine_tune else "# Demo student: evaluation report",
        "",
        f"A {config['shape']} Molmo2 student ({sv['vit_layers']}-layer ViT {sv['vit_hidden']}, {sv['text_layers']}-layer "
        f"LM {sv['text_hidden']}, {sv['crop']} px crops) {origin}, "
        f"{steps} steps in all ({minutes:.0f} minutes of wall-clock time on 2 CPU cores, "
        f"all phases{f'; {cpu_minutes:.0f} minutes of process CPU time, all threads' if cpu_minutes else ''}), "
        "exported to ONNX and evaluated through the appliance runtime (`edge_inspect.vlm`).",
        "",
        f"Evaluation: {seeds.stop - seeds.start} generated parts, seeds {seeds.start}–{seeds.stop - 1}. Training draws "
        "seeds from 1,000,000 up and validation during training uses 500,000–500,039; neither touches the evaluation "
        "seeds.",
        "",
        "## Acceptance bars",
        "",
        "| figure | measured | bar | met |",
        "|---|---|---|---|",
        *[
            f"| {b['figure']} | {_v(b['value'])} | {b['bar']} | "
            f"{'yes' if b['met'] else '**no**' if b['value'] == b['value'] else 'not measured'} |"
            for b in bars
        ],
        "",
        "## Figures",
        "",
        "Object-level (micro) figures count every object on every part: hits / predictions and hits / objects summed "
        "over the parts, so a defect-free part adds its predictions as false positives and nothing else; the 95% "
        "interval is a percentile bootstrap over parts. The per-image mean (a defect-free part without predictions "
        "scores 1) is the second F1 column. A false call is a defect-free part with a defect point; an escape a part "
        "with defects and no defect point. The station figures apply the demo recipe (no defect, exactly 4 screws, "
        "label present with margin ≥ 0.2 and yes/no mass ≥ 0.5) to each part.",
        "",
        *metric_lines(metrics),
        "",
        f"| bundle size | {size_mb:.1f} MB |",
        "|---|---|",
        f"| CPU latency per part ({len(TASKS)} questions, engine) | {latency_ms:.0f} ms |" if latency_ms else "",
        "",
        f"Hit rule (PixMo-Points): Hungarian matching by pixel distance; a matched point is a hit inside its "
        f"object's mask grown by {metrics['dilate_px']} px (a disk: every pixel within that distance). Unreadable answers: {metrics['malformed_answers']}.",
    ]
    if lineage:
        lines += ["", "## Data lineage", "", *lineage_lines(lineage)]
    if comparison:
        lines += ["", "## Before and after", "", *comparison_lines(**comparison)]
    if new_kind:
        seeds_new = range(*new_kind["seeds"])
        lines += ["", f"## New defect kind: {new_kind['after']['kind']}", ""]
        lines += new_kind_lines(new_kind["after"], new_kind.get("before"), seeds_new)
    if shifts:
        seed_range = f" (seeds {shift_seeds.start}–{shift_seeds.stop - 1})" if shift_seeds else ""
        lines += [
            "",
            "## Robustness",
            "",
            f"The same parts{seed_range} rendered with one camera change at "
            "a time (`edge_inspect.sim.Camera`: masks and points go through the same transform as the image).",
            "",
            *robustness_lines(shifts),
        ]
    lines += [
        "",
        "## Prompts the student understands",
        "",
        "Trained phrasings per task (the first is the one the demo station asks); a yes/no answer follows the "
        "question, negated ones included. Any other question is outside its vocabulary: the station's `min_mass` "
        "(default 0.5) makes such a yes/no check uncertain.",
        "",
    ]
    lines += [
        f"- {task} ({TASKS[task][1].replace('_', '/')}): " + "; ".join(f'"{p}"' for p in prompts)
        for task, prompts in PHRASINGS.items()
    ]
    lines += [
        *[line for note in notes or [] for line in ("", note)],
        "",
        "## Learning curve (validation on 40 parts, canonical prompts, no camera shift)",
        "",
        "| step | minutes | defect micro F1 | defect F1 (per image) | screw F1 | screw count | label acc | "
        "label missing acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in evals:
        m = e["eval"]
        lines.append(
            f"| {e['step']} | {e['minutes']:.0f} | {_v(m.get('defect_micro_f1'))} | {_v(m.get('defect_f1'))} | "
            f"{_v(m.get('screw_f1'))} | {_v(m.get('screw_count_exact'))} | {_v(m.get('label_accuracy'))} | "
            f"{_v(m.get('label_missing_accuracy'))} |"
        )
    lines += ["", "## Reproduce", "", "```bash", *commands, "```", ""]
    (bundle / "REPORT.md").write_text("\n".join(line for line in lines if line is not None) + "\n")
    return bundle / "REPORT.md"
