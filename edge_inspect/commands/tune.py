"""``edge-inspect tune``: rates per check on labelled images, and the settings that give the fewest
escapes with the fewest false rejects.

The labelled folder holds ``good/`` and ``bad/`` images, or a ``labels.csv`` (image, check,
expected pass|fail). Each image runs once through the model; every setting is then judged from the
same answers: yes/no ``min_margin`` from 0 to 0.95, point ``max`` (and ``min``) over the counts seen,
count ``expected`` over the counts seen (with the range the good parts were counted in).

* false-reject rate: good parts (or checks expected to pass) that the setting rejects;
* escape rate: bad parts that pass every check (with ``labels.csv``: checks expected to fail that pass).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..camera.images import images_in
from ..config import CountCheck, PointCheck, QACheck, Recipe, StationConfig
from ..errors import UserError
from ..inspection.checks import CheckOutcome, judge_qa
from ..inspection.inspector import Inspector
from ..vlm import VisionLanguageModel

MARGINS = [round(0.05 * i, 2) for i in range(20)]


@dataclass
class Sample:
    path: Path
    part: str | None = None  # "good" | "bad" (folder split)
    checks: dict[str, str] = field(default_factory=dict)  # check name → "pass" | "fail" (labels.csv)


class LabelError(UserError, ValueError):
    """The labelled folder cannot be used; names the file and line."""


def load_labelled(folder: Path) -> list[Sample]:
    labels = folder / "labels.csv"
    if labels.is_file():
        samples: dict[str, Sample] = {}
        with open(labels, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), start=2):
                try:
                    image, check, expected = row["image"], row["check"], row["expected"].strip().lower()
                except (KeyError, AttributeError):
                    raise LabelError(f"{labels}:{n}: needs the columns image, check, expected") from None
                if expected not in ("pass", "fail"):
                    raise LabelError(f"{labels}:{n}: expected: {expected!r} is not pass or fail")
                if not (folder / image).is_file():
                    raise LabelError(f"{labels}:{n}: image: {folder / image} does not exist")
                samples.setdefault(image, Sample(folder / image)).checks[check] = expected
        return list(samples.values())
    samples_list = []
    for part in ("good", "bad"):
        sub = folder / part
        if sub.is_dir():
            samples_list += [Sample(p, part) for p in images_in(sub)]
    if not samples_list:
        raise LabelError(f"{folder}: no good/ and bad/ images and no labels.csv")
    return samples_list


def _status(check, outcome: CheckOutcome, setting: float | int | None) -> str:
    """The check's status on this answer under ``setting`` (errors count as rejects)."""
    if outcome.status == "error":
        return "fail"
    if isinstance(check, QACheck):
        return judge_qa(
            check.model_copy(update={"min_margin": setting}),
            outcome.p_yes or 0.0,
            outcome.margin or 0.0,
            mass=outcome.mass,
        ).status.replace("error", "fail")
    if isinstance(check, PointCheck) and setting is not None:
        return "pass" if check.min <= outcome.counted <= setting else "fail"
    if isinstance(check, CountCheck):
        return "pass" if outcome.counted == setting else "fail"
    return outcome.status


def _settings(check, outcomes: list[CheckOutcome]):
    if isinstance(check, QACheck):
        return "min_margin", MARGINS, check.min_margin
    if isinstance(check, PointCheck):
        top = max([o.counted for o in outcomes] + [check.max, check.min]) + 1
        return "max", list(range(check.min, top + 1)), check.max
    if isinstance(check, CountCheck):
        counts = [o.counted for o in outcomes if o.status != "error"] + [check.expected]
        return "expected", list(range(max(0, min(counts) - 1), max(counts) + 2)), check.expected
    return None, [None], None


def _counted_on_good(check, samples: list[Sample], outcomes: list[CheckOutcome]) -> dict | None:
    """A count check: the counts on parts that should pass (their range and how often each came)."""
    if not isinstance(check, CountCheck):
        return None
    good = [o.counted for s, o in zip(samples, outcomes, strict=True)
            if o.status != "error" and (s.checks.get(check.name) == "pass" if s.checks else s.part == "good")]  # fmt: skip
    if not good:
        return None
    return {"min": min(good), "max": max(good), "histogram": {str(n): good.count(n) for n in sorted(set(good))}}


def sweep(recipe: Recipe, samples: list[Sample], results: list[list[CheckOutcome]]) -> dict:
    report = {}
    for i, check in enumerate(recipe.checks):
        outcomes = [r[i] for r in results]
        name, values, current = _settings(check, outcomes)
        rows = []
        for value in values:
            fr = fr_n = esc = esc_n = 0
            for sample, result, outcome in zip(samples, results, outcomes, strict=True):
                status = _status(check, outcome, value)
                if sample.checks:  # per-check labels
                    expected = sample.checks.get(check.name)
                    if expected == "pass":
                        fr_n += 1
                        fr += status == "fail"
                    elif expected == "fail":
                        esc_n += 1
                        esc += status == "pass"
                else:  # good/bad parts: this check at ``value``, the others as configured
                    others_pass = all(
                        _status(c, result[k], _settings(c, [result[k]])[2]) == "pass"
                        for k, c in enumerate(recipe.checks)
                        if k != i
                    )
                    if sample.part == "good":
                        fr_n += 1
                        fr += status == "fail"
                    else:
                        esc_n += 1
                        esc += status == "pass" and others_pass
            rows.append(
                {
                    "setting": value,
                    "false_reject": fr / fr_n if fr_n else None,
                    "escape": esc / esc_n if esc_n else None,
                    "good": fr_n,
                    "bad": esc_n,
                }
            )
        best = min(
            rows,
            key=lambda r: ((r["escape"] or 0.0), (r["false_reject"] or 0.0), abs((r["setting"] or 0) - (current or 0))),
        )
        now = next(r for r in rows if r["setting"] == current)
        report[check.name] = {"kind": check.kind, "parameter": name, "current": now, "recommended": best, "sweep": rows}
        counted = _counted_on_good(check, samples, outcomes)
        if counted is not None:
            report[check.name]["counted_good"] = counted
    return report


def plot(name: str, entry: dict, path: Path) -> None:
    """Rates against the setting (false rejects blue, escapes red), as a PNG drawn with OpenCV."""
    w, h, m = 640, 360, 50
    img = np.full((h, w, 3), 255, np.uint8)
    rows = entry["sweep"]
    xs = [r["setting"] if r["setting"] is not None else 0 for r in rows]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def px(x: float, y: float) -> tuple[int, int]:
        return int(m + (x - x0) / (x1 - x0) * (w - 2 * m)), int(h - m - y * (h - 2 * m))

    cv2.rectangle(img, (m, m), (w - m, h - m), (0, 0, 0), 1)
    for key, colour in (("false_reject", (178, 114, 0)), ("escape", (0, 0, 200))):
        pts = [px(x, r[key]) for x, r in zip(xs, rows, strict=True) if r[key] is not None]
        for a, b in zip(pts, pts[1:], strict=False):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
    best = entry["recommended"]["setting"]
    if best is not None:
        cv2.line(img, px(best, 0), px(best, 1), (0, 150, 0), 1)
    cv2.putText(
        img,
        f"{name}: {entry['parameter'] or '-'}  (blue false reject, red escape, green recommended)",
        (m, 30),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    for y in (0, 0.5, 1):
        cv2.putText(img, f"{y:.1f}", (10, px(x0, y)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"{x0}", (m - 5, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"{x1}", (w - m - 15, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def run_tune(config: StationConfig, model: VisionLanguageModel, labelled: Path, recipe_number: int, out: Path) -> dict:
    recipe = config.recipe(recipe_number)
    if recipe is None:
        raise LabelError(f"recipe {recipe_number} is not configured")
    samples = load_labelled(labelled)
    inspector = Inspector(model, config.model.max_new_tokens)
    results, kept = [], []
    for sample in samples:
        frame = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
        if frame is None:
            raise LabelError(f"{sample.path}: not an image OpenCV can read")
        results.append(inspector.run(frame, recipe).outcomes)
        kept.append(sample)
    checks = sweep(recipe, kept, results)
    report = {
        "recipe": recipe.number,
        "images": len(kept),
        "good": sum(s.part == "good" for s in kept),
        "bad": sum(s.part == "bad" for s in kept),
        "checks": checks,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in checks.items():
        file = out / f"tune_{''.join(c if c.isalnum() else '_' for c in name)}.png"
        plot(name, entry, file)
        entry["plot"] = str(file)
    (out / "tune.json").write_text(json.dumps(report, indent=2))
    return report


def print_report(report: dict) -> None:
    def pct(v) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    print(f"recipe {report['recipe']}: {report['images']} images ({report['good']} good, {report['bad']} bad)")
    print(
        f"{'check':16} {'parameter':11} {'now':>6} {'false rej.':>10} {'escapes':>8}   "
        f"{'recommended':>11} {'false rej.':>10} {'escapes':>8}"
    )
    for name, e in report["checks"].items():
        now, best = e["current"], e["recommended"]
        print(
            f"{name[:16]:16} {(e['parameter'] or '-'):11} {str(now['setting']):>6} {pct(now['false_reject']):>10} "
            f"{pct(now['escape']):>8}   {str(best['setting']):>11} {pct(best['false_reject']):>10} "
            f"{pct(best['escape']):>8}"
        )
        if "counted_good" in e:
            c = e["counted_good"]
            seen = ", ".join(f"{n} on {k}" for n, k in c["histogram"].items())
            print(f"{'':16} good parts counted {c['min']}..{c['max']} ({seen} part(s))")
