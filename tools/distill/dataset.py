"""Training/evaluation records: a JSONL format, and the same records drawn from the part generator.

One JSON object per line:

    {"image": "images/000123.png", "prompt": "Point to the screws.", "target": "<points …>screw</points>",
     "task": "screws", "kind": "point", "points": [[0.12, 0.2], …], "masks": ["masks/000123_screws_0.png", …],
     "answer": null, "seed": 123}

``image`` and ``masks`` are relative to the JSONL file. ``target`` is what the model should say
(from a teacher or from ground truth). ``points``/``masks``/``answer`` are ground truth where known,
used by evaluation (a teacher-labelled plant set may have none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.sim import Part, render_part

from .tasks import TASKS, Example, example, point_objects

# How often each task is drawn in training: defect pointing is the hard one.
TASK_WEIGHTS = {"defects": 0.6, "screws": 0.25, "label": 0.15}
FRAME = (320, 240)


@dataclass
class Record:
    prompt: str
    target: str
    task: str
    kind: str
    image_path: Path | None = None
    image: np.ndarray | None = None  # RGB, when held in memory
    points: list[tuple[float, float]] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    answer: bool | None = None
    seed: int | None = None
    # Union masks of every defect, every screw and the label on the part, where the generator knows
    # them: dense targets for the auxiliary grounding loss in training.
    region_masks: dict[str, np.ndarray] | None = None
    region_points: dict[str, list[tuple[float, float]]] | None = None  # every defect's and screw's point

    def rgb(self) -> np.ndarray:
        if self.image is not None:
            return self.image
        frame = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"{self.image_path}: cannot read image")
        return frame[:, :, ::-1].copy()


def from_part(part: Part, task: str) -> Record:
    ex: Example = example(part, task)
    objects = point_objects(part, task)  # masks[i] belongs to points[i]
    regions = {"defect": np.zeros(part.image.shape[:2], bool), "screw": np.zeros(part.image.shape[:2], bool),
               "label": part.label_mask if part.label_mask is not None else np.zeros(part.image.shape[:2], bool)}
    for obj in part.defects:
        regions["defect"] |= obj.mask
    for obj in part.screws:
        regions["screw"] |= obj.mask
    region_points = {"defect": [o.normalized(part.width, part.height) for o in part.defects],
                     "screw": [o.normalized(part.width, part.height) for o in part.screws]}
    return Record(prompt=ex.prompt, target=ex.target, task=task, kind=TASKS[task][1], image=part.image[:, :, ::-1].copy(),
                  points=ex.points, masks=[o.mask for o in objects], answer=ex.answer, seed=part.seed,
                  region_masks=regions, region_points=region_points)


def sim_record(seed: int, task: str | None = None, weights: dict[str, float] | None = None) -> Record:
    """The record for generator seed ``seed``; the task is drawn from the seed (with ``weights``) unless given."""
    part = render_part(seed, *FRAME)
    if task is None:
        weights = weights or TASK_WEIGHTS
        names = list(weights)
        p = np.array(list(weights.values()), dtype=float)
        task = names[int(np.random.default_rng(seed + 7_919).choice(len(names), p=p / p.sum()))]
    return from_part(part, task)


def write_sim_set(out: Path, seeds: range, tasks: list[str] | None = None) -> Path:
    """Render parts and write images, masks and one JSONL line per (part, task)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    jsonl = out / "records.jsonl"
    with open(jsonl, "w") as f:
        for seed in seeds:
            part = render_part(seed, *FRAME)
            image_rel = f"images/{seed:07d}.png"
            cv2.imwrite(str(out / image_rel), part.image)
            for task in tasks or list(TASKS):
                rec = from_part(part, task)
                mask_paths = []
                for k, mask in enumerate(rec.masks):
                    rel = f"masks/{seed:07d}_{task}_{k}.png"
                    cv2.imwrite(str(out / rel), mask.astype(np.uint8) * 255)
                    mask_paths.append(rel)
                f.write(json.dumps({
                    "image": image_rel, "prompt": rec.prompt, "target": rec.target, "task": task, "kind": rec.kind,
                    "points": [list(p) for p in rec.points], "masks": mask_paths, "answer": rec.answer, "seed": seed,
                }) + "\n")  # fmt: skip
    return jsonl


class JsonlError(ValueError):
    pass


def read_jsonl(path: Path, load_masks: bool = True) -> list[Record]:
    """Read records; a bad line raises JsonlError naming file and line."""
    records = []
    base = path.parent
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                kind = row.get("kind") or TASKS.get(row.get("task", ""), (None, "point"))[1]
                rec = Record(prompt=row["prompt"], target=row["target"], task=row.get("task", ""), kind=kind,
                             image_path=base / row["image"], points=[tuple(p) for p in row.get("points") or []],
                             answer=row.get("answer"), seed=row.get("seed"))
                if load_masks:
                    rec.masks = [cv2.imread(str(base / m), cv2.IMREAD_GRAYSCALE) > 0 for m in row.get("masks") or []]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise JsonlError(f"{path}:{number}: bad record ({err})") from None
            if not rec.image_path.is_file():
                raise JsonlError(f"{path}:{number}: image {rec.image_path} not found")
            records.append(rec)
    return records
