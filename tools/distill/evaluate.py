"""Evaluate a bundle (ONNX, via edge_inspect.vlm) or a checkpoint (transformers) on generated parts
or on a labelled JSONL set: pointing precision/recall/F1, screw counting exact match, yes/no accuracy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_inspect.sim import render_part
from edge_inspect.vlm.points import parse_points
from tools.molmo2.predictor import TorchPredictor

from .dataset import FRAME, Record, from_part
from .metrics import PointScore, score_points, summarize
from .tasks import TASKS

__all__ = ["BundlePredictor", "Predictor", "TorchPredictor", "evaluate_records", "headline", "sim_records",
           "write_report"]


class Predictor(Protocol):
    def point(self, rgb: np.ndarray, prompt: str) -> tuple[list[tuple[float, float]], str]: ...

    def yes_no(self, rgb: np.ndarray, prompt: str) -> bool: ...


class BundlePredictor:
    """The appliance runtime: what the station will really run."""

    def __init__(self, bundle: str | Path, max_new_tokens: int = 96):
        from edge_inspect.vlm import load_bundle

        self.model = load_bundle(bundle)
        self.max_new_tokens = max_new_tokens
        self._cache: tuple[int, object] | None = None

    def _encode(self, rgb: np.ndarray):
        if self._cache is None or self._cache[0] != id(rgb):
            self._cache = (id(rgb), self.model.encode(rgb))
        return self._cache[1]

    def point(self, rgb, prompt):
        p = self.model.point(self._encode(rgb), prompt, self.max_new_tokens)
        return [(q.x, q.y) for q in p.answer.points], p.text

    def yes_no(self, rgb, prompt):
        return self.model.ask_yes_no(self._encode(rgb), prompt).answer


def evaluate_records(predictor: Predictor, records: list[Record], dilate_px: int = 3) -> dict:
    """Metrics over records; records of one image should be adjacent so the image is encoded once."""
    point_scores: dict[str, list[PointScore]] = {}
    counts: dict[str, list[bool]] = {}
    yes_no: dict[str, list[bool]] = {}
    malformed = 0
    start = time.perf_counter()
    images = 0
    last_image = None
    for rec in records:
        rgb = rec.rgb() if rec.image is None else rec.image
        if rec.image_path != last_image or rec.image is not None:
            images += 1
        last_image = rec.image_path
        if rec.kind == "point":
            points, text = predictor.point(rgb, rec.prompt)
            malformed += int(parse_points(text).malformed)
            point_scores.setdefault(rec.task, []).append(score_points(points, rec.points, rec.masks, dilate_px))
            counts.setdefault(rec.task, []).append(len(points) == len(rec.points))
        elif rec.answer is not None:
            yes_no.setdefault(rec.task, []).append(predictor.yes_no(rgb, rec.prompt) == rec.answer)
    result: dict = {"pointing": {t: summarize(s) for t, s in point_scores.items()},
                    "counting_exact": {t: float(np.mean(c)) for t, c in counts.items()},
                    "yes_no_accuracy": {t: float(np.mean(a)) for t, a in yes_no.items()},
                    "malformed_answers": malformed, "dilate_px": dilate_px}
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def sim_records(seeds: range, tasks: list[str] | None = None) -> list[Record]:
    """Every task on every generated part (images held in memory)."""
    records = []
    for seed in seeds:
        part = render_part(seed, *FRAME)
        for task in tasks or list(TASKS):
            records.append(from_part(part, task))
    return records


def headline(metrics: dict) -> dict[str, float]:
    """The figures the acceptance criteria name."""
    return {
        "defect_f1": metrics["pointing"].get("defects", {}).get("f1", float("nan")),
        "screw_f1": metrics["pointing"].get("screws", {}).get("f1", float("nan")),
        "screw_count_exact": metrics["counting_exact"].get("screws", float("nan")),
        "label_accuracy": metrics["yes_no_accuracy"].get("label", float("nan")),
    }


def write_report(metrics: dict, out_json: Path, title: str, details: dict) -> Path:
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"metrics": metrics, "headline": headline(metrics), **details}, indent=2) + "\n")
    md = out_json.with_suffix(".md")
    h = headline(metrics)
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in h.items()]
    for task, s in metrics["pointing"].items():
        lines.append(f"| {task} precision / recall | {s['precision']:.3f} / {s['recall']:.3f} |")
    lines += ["", f"Malformed answers: {metrics['malformed_answers']}. Hit rule: Hungarian matching by pixel distance, "
              f"a matched point is a hit inside the object's mask dilated by {metrics['dilate_px']} px.", ""]
    lines += [f"- {k}: {v}" for k, v in details.items()]
    md.write_text("\n".join(lines) + "\n")
    return md
