"""The student's report: evaluation figures, seeds, training time, learning curve, and the exact
commands that reproduce it. Written next to the bundle (models/demo-student/REPORT.md, report.json)."""

from __future__ import annotations

import json
from pathlib import Path

from .evaluate import headline


def learning_curve(run_dir: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval" in r]
    return losses, evals


def write_report(run_dir: Path, bundle: Path, metrics: dict, seeds: range, commands: list[str],
                 latency_ms: float | None = None, notes: list[str] | None = None) -> Path:
    losses, evals = learning_curve(run_dir)
    config = json.loads((run_dir / "train_config.json").read_text())
    h = headline(metrics)
    size_mb = sum(p.stat().st_size for p in bundle.iterdir() if p.is_file()) / 1e6
    minutes = max((r["minutes"] for r in losses + evals), default=0.0)
    report = {
        "headline": h, "metrics": metrics, "evaluation_seeds": [seeds.start, seeds.stop],
        "training": {"steps": max((r["step"] for r in losses), default=0), "minutes": minutes, "config": config},
        "learning_curve": {"loss": losses[::10], "evaluations": evals}, "bundle_mb": round(size_mb, 2),
        "cpu_latency_ms_per_image": latency_ms, "commands": commands, "notes": notes or [],
    }  # fmt: skip
    (bundle / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Demo student: evaluation report", "",
        f"A {config['shape']} Molmo2 student ({config['shape_values']['vit_layers']}-layer ViT "
        f"{config['shape_values']['vit_hidden']}, {config['shape_values']['text_layers']}-layer LM "
        f"{config['shape_values']['text_hidden']}, {config['shape_values']['crop']} px crops) trained from scratch "
        f"on generated parts for {report['training']['steps']} steps ({minutes:.0f} minutes on this machine's 2 CPU "
        f"cores), exported to ONNX and evaluated through the appliance runtime (`edge_inspect.vlm`).", "",
        f"Evaluation: {seeds.stop - seeds.start} generated parts, seeds {seeds.start}–{seeds.stop - 1} (training "
        f"uses seeds from 1,000,000 up, validation during training 500,000–500,039).", "",
        "| metric | value |", "|---|---|",
        f"| surface-defect pointing F1 | {h['defect_f1']:.3f} |",
        f"| screw pointing F1 | {h['screw_f1']:.3f} |",
        f"| screw counting exact match | {h['screw_count_exact']:.3f} |",
        f"| label present yes/no accuracy | {h['label_accuracy']:.3f} |",
    ]
    for task, s in metrics["pointing"].items():
        lines.append(f"| {task} precision / recall | {s['precision']:.3f} / {s['recall']:.3f} |")
    lines += [
        f"| bundle size | {size_mb:.1f} MB |",
        f"| CPU latency per image (3 checks, engine) | {latency_ms:.0f} ms |" if latency_ms else "",
        "", f"Hit rule (PixMo-Points): Hungarian matching by pixel distance; a matched point is a hit inside its "
        f"object's mask dilated by {metrics['dilate_px']} px. Unreadable answers: {metrics['malformed_answers']}.",
        *[line for note in notes or [] for line in ("", note)],
        "", "## Learning curve (validation on 40 parts)", "",
        "| step | minutes | defect F1 | screw F1 | screw count | label acc |", "|---|---|---|---|---|---|",
    ]
    for e in evals:
        m = e["eval"]
        lines.append(f"| {e['step']} | {e['minutes']:.0f} | {m['defect_f1']:.2f} | {m['screw_f1']:.2f} | "
                     f"{m['screw_count_exact']:.2f} | {m['label_accuracy']:.2f} |")
    lines += ["", "## Reproduce", "", "```bash", *commands, "```", ""]
    (bundle / "REPORT.md").write_text("\n".join(line for line in lines if line is not None) + "\n")
    return bundle / "REPORT.md"
