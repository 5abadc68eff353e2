"""Evaluate a model (the bundle through the appliance runtime, or any ``Predictor``) on generated
parts or on labelled records.

Pointing: object-level (micro) precision/recall/F1 over all objects with a bootstrap 95 % interval
(parts without objects add their predictions as false positives only), the per-image mean as a
second figure, recall per defect kind and per number of defects on the part, false calls (a
defect-free part with a defect point) and escapes (a part with defects and no defect point), the
median pixel error of matched points and answer tokens per point. Counting: exact match, also on
parts that miss screws, and how many empty holes were called a screw. Yes/no: accuracy, p_yes
margins and the yes/no probability mass. Station level, where a part was asked all of defects,
screws and label: the share of good parts rejected and of bad parts passed. The robustness suite
(``robustness``) repeats this with the camera moved or its image degraded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import numpy as np

from ..vlm.points import parse_points
from .metrics import PointScore, bootstrap_micro, dilated, micro, score_points, summarize
from .records import Record, sim_records
from .shifts import SHIFTS

STATION_TASKS = ("defects", "screws", "label")  # the demo recipe: no defect, four screws, label present
UNCERTAIN_MARGIN = 0.2  # the station's default min_margin
MIN_MASS = 0.5  # the station's default min_mass


class Predictor(Protocol):
    def point(self, rgb: np.ndarray, prompt: str) -> tuple[list[tuple[float, float]], str]: ...

    def yes_no(self, rgb: np.ndarray, prompt: str) -> bool: ...


class BundlePredictor:
    """The appliance runtime: what the station will really run. ``threads``: ONNX Runtime's threads
    per graph (0: its default)."""

    def __init__(self, bundle: str | Path, max_new_tokens: int = 96, threads: int = 0):
        from ..vlm import load_bundle

        self.model = load_bundle(bundle, threads=threads)
        self.max_new_tokens = max_new_tokens
        self._cache: tuple[int, object] | None = None
        self.last_tokens: int | None = None

    def forget(self) -> None:
        """Drop the encoded frame: the next question encodes its frame anew."""
        self._cache = None

    def _encode(self, rgb: np.ndarray):
        if self._cache is None or self._cache[0] != id(rgb):
            self._cache = (id(rgb), self.model.encode(rgb))
        return self._cache[1]

    def point(self, rgb, prompt):
        p = self.model.point(self._encode(rgb), prompt, self.max_new_tokens)
        self.last_tokens = int(p.timings_ms.get("tokens", 0))
        return [(q.x, q.y) for q in p.answer.points], p.text

    def yes_no(self, rgb, prompt):
        return self.yes_no_scores(rgb, prompt)[0]

    def yes_no_scores(self, rgb, prompt) -> tuple[bool, float, float]:
        """(answer, p_yes, mass on the yes/no tokens)."""
        a = self.model.ask_yes_no(self._encode(rgb), prompt)
        return a.answer, a.p_yes, a.mass


def _part_key(rec: Record):
    return rec.seed if rec.seed is not None else str(rec.image_path)


def evaluate_records(predictor: Predictor, records: list[Record], dilate_px: int = 3, bootstrap: int = 2000) -> dict:
    """Metrics over records; records of one image should be adjacent so the image is encoded once."""
    point_scores: dict[str, list[PointScore]] = {}
    point_records: dict[str, list[Record]] = {}
    predicted_counts: dict[str, list[int]] = {}
    tokens: dict[str, list[tuple[int, int]]] = {}  # (answer tokens, points) per answer
    yes_no: dict[str, list[tuple[bool, bool, float | None, float | None]]] = {}  # (truth, answer, p_yes, mass)
    parts: dict[object, dict[str, tuple]] = {}  # part → task → (truth, prediction) for the station verdict
    decoys = [0, 0]  # empty holes a screw point landed in, empty holes
    malformed = 0
    start = time.perf_counter()
    for rec in records:
        rgb = rec.rgb() if rec.image is None else rec.image
        if rec.kind == "point":
            points, text = predictor.point(rgb, rec.prompt)
            malformed += int(parse_points(text).malformed)
            score = score_points(points, rec.points, rec.masks, dilate_px, size=rgb.shape[:2])
            point_scores.setdefault(rec.task, []).append(score)
            point_records.setdefault(rec.task, []).append(rec)
            predicted_counts.setdefault(rec.task, []).append(len(points))
            last_tokens = getattr(predictor, "last_tokens", None)  # the engine predictors count them
            if last_tokens is not None and points:
                tokens.setdefault(rec.task, []).append((last_tokens, len(points)))
            parts.setdefault(_part_key(rec), {})[rec.task] = (len(rec.points), len(points))
            if rec.decoy_masks:
                h, w = rec.decoy_masks[0].shape
                for mask in rec.decoy_masks:
                    grown = dilated(mask, dilate_px)
                    decoys[0] += any(
                        grown[min(h - 1, max(0, round(y * h))), min(w - 1, max(0, round(x * w)))] for x, y in points
                    )
                    decoys[1] += 1
        elif rec.answer is not None:
            if hasattr(predictor, "yes_no_scores"):
                answer, p_yes, mass = predictor.yes_no_scores(rgb, rec.prompt)
            else:
                answer, p_yes, mass = predictor.yes_no(rgb, rec.prompt), None, None
            yes_no.setdefault(rec.task, []).append((rec.answer, answer, p_yes, mass))
            # the demo recipe fails a close call (min_margin) and, on the station, too little yes/no mass
            confident = p_yes is None or (abs(2 * p_yes - 1) >= UNCERTAIN_MARGIN and mass >= MIN_MASS)
            parts.setdefault(_part_key(rec), {})[rec.task] = (rec.answer, answer and confident)
    pointing = {task: _pointing_figures(scores, point_records[task], tokens.get(task, []), bootstrap)
                for task, scores in point_scores.items()}  # fmt: skip
    counting = {
        t: float(np.mean([p == sc.objects for p, sc in zip(c, point_scores[t], strict=True)]))
        for t, c in predicted_counts.items()
    }
    result: dict = {
        "pointing": pointing,
        "counting_exact": counting,
        "yes_no_accuracy": {t: float(np.mean([a == b for a, b, _, _ in v])) for t, v in yes_no.items()},
        "malformed_answers": malformed,
        "dilate_px": dilate_px,
    }
    if "screws" in predicted_counts:
        missing = [
            p == sc.objects
            for p, sc in zip(predicted_counts["screws"], point_scores["screws"], strict=True)
            if sc.objects < 4
        ]
        result["screws_missing"] = {
            "count_exact": float(np.mean(missing)) if missing else float("nan"), "parts": len(missing),
            "empty_holes_called_screw": decoys[0] / decoys[1] if decoys[1] else float("nan"), "empty_holes": decoys[1],
        }  # fmt: skip
    result["yes_no"] = {
        task: _yes_no_figures(v, result["yes_no_accuracy"][task]) for task, v in yes_no.items() if _scored(v)
    }
    result["station"] = station_rates(parts)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _pointing_figures(
    scores: list[PointScore], records: list[Record], tokens: list[tuple[int, int]], bootstrap: int
) -> dict[str, object]:
    """One pointing task's figures in the JSON report: summary, micro with its bootstrap interval, pixel
    errors, tokens per point, false-call and escape rates, recall by object count and by defect kind."""
    s: dict[str, object] = dict(summarize(scores))
    s["micro"] = {**micro(scores), "ci95": bootstrap_micro(scores, bootstrap) if bootstrap else {}}
    distances = [m.distance_px for sc in scores for m in sc.matches]
    hits = [m.distance_px for sc in scores for m in sc.matches if m.hit]
    misses = [m.distance_px for sc in scores for m in sc.matches if not m.hit]
    s["median_px_error"] = float(np.median(distances)) if distances else float("nan")
    s["median_px_error_hits"] = float(np.median(hits)) if hits else float("nan")
    s["median_px_error_misses"] = float(np.median(misses)) if misses else float("nan")
    s["tokens_per_point"] = sum(a for a, _ in tokens) / sum(b for _, b in tokens) if tokens else float("nan")
    with_objects = [sc for sc in scores if sc.objects]
    without = [sc for sc in scores if not sc.objects]
    s["false_call_rate"] = float(np.mean([sc.predictions > 0 for sc in without])) if without else float("nan")
    s["escape_rate"] = float(np.mean([sc.predictions == 0 for sc in with_objects])) if with_objects else float("nan")
    s["parts_without_objects"], s["parts_with_objects"] = len(without), len(with_objects)
    by_n: dict[int, list[int]] = {}
    by_kind: dict[str, list[int]] = {}
    for sc, rec in zip(scores, records, strict=True):
        hit = sc.hit_objects()
        by_n.setdefault(sc.objects, [0, 0])
        by_n[sc.objects][0] += len(hit)
        by_n[sc.objects][1] += sc.objects
        for i, kind in enumerate(rec.kinds):
            by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += i in hit
            by_kind[kind][1] += 1
    s["recall_by_count"] = {
        str(n): {"recall": h / o if o else float("nan"), "objects": o} for n, (h, o) in sorted(by_n.items()) if n
    }
    s["recall_by_kind"] = {k: {"recall": h / o, "objects": o} for k, (h, o) in sorted(by_kind.items())}
    return s


def _scored(answers: list[tuple[bool, bool, float | None, float | None]]) -> bool:
    return any(p is not None for _, _, p, _ in answers)


def _yes_no_figures(answers: list[tuple[bool, bool, float | None, float | None]], accuracy: float) -> dict[str, object]:
    """One yes/no task's figures from its (truth, answer, p_yes, mass) tuples that carry scores."""
    scored = [(p, m) for _, _, p, m in answers if p is not None and m is not None]
    margins = np.array([abs(2 * p - 1) for p, _ in scored])
    masses = np.array([m for _, m in scored])
    wrong = [abs(2 * p - 1) for (t, a, p, _) in answers if p is not None and t != a]
    return {
        "accuracy": accuracy, "median_margin": float(np.median(margins)),
        "uncertain_share": float(np.mean(margins < UNCERTAIN_MARGIN)), "median_mass": float(np.median(masses)),
        "min_mass": float(masses.min()), "low_mass_share": float(np.mean(masses < MIN_MASS)),
        "max_margin_wrong": float(max(wrong)) if wrong else None, "answers": len(answers),
    }  # fmt: skip


def station_rates(parts: dict[object, dict[str, tuple]]) -> dict:
    """The demo recipe's verdict per part (no defect point, four screw points, label present) against
    the truth: good parts rejected, bad parts passed."""
    good_rejected, good, bad_passed, bad = 0, 0, 0, 0
    for tasks in parts.values():
        if not all(t in tasks for t in STATION_TASKS):
            continue
        (n_defects, p_defects), (n_screws, p_screws), (label, p_label) = (tasks[t] for t in STATION_TASKS)
        is_good = n_defects == 0 and n_screws == 4 and bool(label)
        passes = p_defects == 0 and p_screws == 4 and bool(p_label)
        if is_good:
            good, good_rejected = good + 1, good_rejected + (not passes)
        else:
            bad, bad_passed = bad + 1, bad_passed + passes
    return {
        "good_parts": good,
        "bad_parts": bad,
        "good_part_reject_rate": good_rejected / good if good else float("nan"),
        "bad_part_pass_rate": bad_passed / bad if bad else float("nan"),
    }


def shift_row(metrics: dict) -> dict[str, float]:
    """The figures the robustness table shows for one shift."""
    nan = float("nan")
    d = metrics["pointing"].get("defects", {})
    return {
        "defect_micro_f1": d.get("micro", {}).get("f1", nan), "defect_micro_recall": d.get("micro", {}).get("recall", nan),
        "false_call_rate": d.get("false_call_rate", nan), "escape_rate": d.get("escape_rate", nan),
        "screw_count_exact": metrics["counting_exact"].get("screws", nan),
        "label_accuracy": metrics["yes_no_accuracy"].get("label", nan),
        "label_missing_accuracy": metrics["yes_no_accuracy"].get("label_missing", nan),
        "good_part_reject_rate": metrics["station"]["good_part_reject_rate"],
        "bad_part_pass_rate": metrics["station"]["bad_part_pass_rate"],
    }  # fmt: skip


def robustness(
    predictor: Predictor,
    seeds: range,
    shifts: list[str] | None = None,
    dilate_px: int = 3,
    tasks: tuple[str, ...] = ("defects", "screws", "label", "label_missing"),
) -> dict[str, dict]:
    """``shift_row`` figures per camera shift (``SHIFTS``), plus "none" (the same parts, unmoved)."""
    rows = {}
    for name in ["none", *(shifts or list(SHIFTS))]:
        camera = None if name == "none" else SHIFTS[name]
        metrics = evaluate_records(predictor, sim_records(seeds, list(tasks), camera), dilate_px, bootstrap=0)
        rows[name] = shift_row(metrics) | {
            "good_parts": metrics["station"]["good_parts"],
            "bad_parts": metrics["station"]["bad_parts"],
        }
    return rows


def headline(metrics: dict) -> dict[str, float]:
    """The figures the acceptance criteria name."""
    nan = float("nan")
    d = metrics["pointing"].get("defects", {})
    kinds = d.get("recall_by_kind", {})
    station = metrics.get("station", {})
    return {
        "defect_micro_f1": d.get("micro", {}).get("f1", nan),
        "defect_micro_recall": d.get("micro", {}).get("recall", nan),
        "scratch_recall": kinds.get("scratch", {}).get("recall", nan),
        "false_call_rate": d.get("false_call_rate", nan),
        "escape_rate": d.get("escape_rate", nan),
        "good_part_reject_rate": station.get("good_part_reject_rate", nan),
        "bad_part_pass_rate": station.get("bad_part_pass_rate", nan),
        "label_missing_accuracy": metrics["yes_no_accuracy"].get("label_missing", nan),
        "hole_f1": metrics["pointing"].get("holes", {}).get("micro", {}).get("f1", nan),
        "defect_f1": d.get("f1", nan),
        "screw_f1": metrics["pointing"].get("screws", {}).get("f1", nan),
        "screw_count_exact": metrics["counting_exact"].get("screws", nan),
        "label_accuracy": metrics["yes_no_accuracy"].get("label", nan),
    }
