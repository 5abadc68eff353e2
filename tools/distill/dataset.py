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
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.evaluation.records import FRAME, Record, from_part
from edge_inspect.sim import Camera, PartSpec, render_part

from .tasks import TASKS, draw_phrasing

__all__ = [
    "FRAME",
    "TASK_WEIGHTS",
    "JsonlError",
    "Record",
    "from_part",
    "read_jsonl",
    "sample_camera",
    "sim_record",
    "write_sim_set",
]

# How often each task is drawn in training: defect pointing is the hard one.
TASK_WEIGHTS = {"defects": 0.5, "screws": 0.2, "holes": 0.08, "label": 0.11, "label_missing": 0.11}


def sample_camera(rng: np.random.Generator, identity_share: float = 0.2) -> Camera:
    """A random camera for training (augmentation): wider than the robustness suite's shifts
    (scale 0.8/1.2, rotation ±10°, translation ±10 %, brightness ±30 %, blur 1.5, noise 8, JPEG 40),
    each knob on about half of the time; ``identity_share`` of the parts as the generator draws them."""
    if rng.random() < identity_share:
        return Camera()
    on = rng.random(7) < 0.5
    return Camera(
        scale=float(np.exp(rng.uniform(np.log(0.75), np.log(1.28)))) if on[0] else 1.0,
        rotation=float(rng.uniform(-12, 12)) if on[1] else 0.0,
        shift=(float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12))) if on[2] else (0.0, 0.0),
        brightness=float(rng.uniform(-0.4, 0.4)) if on[3] else 0.0,
        blur=float(rng.uniform(0.5, 2.0)) if on[4] else 0.0,
        noise=float(rng.uniform(2, 10)) if on[5] else 0.0,
        jpeg=int(rng.integers(30, 90)) if on[6] else 0,
    )  # fmt: skip


def sim_record(
    seed: int,
    task: str | None = None,
    weights: dict[str, float] | None = None,
    augment: bool = False,
    defect_counts: tuple[int, ...] | None = None,
    defect_kinds: tuple[str, ...] | None = None,
) -> Record:
    """The record for generator seed ``seed``; the task is drawn from the seed (with ``weights``) unless given.
    ``augment``: a random camera (``sample_camera``) and a random phrasing of the task, drawn from the seed.
    ``defect_counts``: a defect-pointing part's number of defects is drawn from this list (the
    generator's own draw is 0, 0, 1, 1, 2, 3); more parts with several defects teach the model not to stop early.
    ``defect_kinds``: the kinds a part's defects are drawn from (default the generator's: no new kind)."""
    rng = np.random.default_rng(seed + 7_919)
    if task is None:
        weights = weights or TASK_WEIGHTS
        names = list(weights)
        p = np.array(list(weights.values()), dtype=float)
        task = names[int(rng.choice(len(names), p=p / p.sum()))]
    spec = None if defect_kinds is None else PartSpec(defect_kinds=defect_kinds)
    if defect_counts and task == "defects":
        n = int(np.random.default_rng([seed, 47]).choice(defect_counts))
        spec = PartSpec(defects=n) if defect_kinds is None else PartSpec(defects=n, defect_kinds=defect_kinds)
    if not augment:
        return from_part(render_part(seed, *FRAME, spec=spec), task)
    aug = np.random.default_rng([seed, 31])
    part = render_part(seed, *FRAME, spec=spec, camera=sample_camera(aug))
    return from_part(part, task, draw_phrasing(task, aug))


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


def _read_mask(path: Path, where: str) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise JsonlError(f"{where}: mask {path} not found or unreadable")
    return mask > 0


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
                image_path = base / row["image"]
                rec = Record(
                    prompt=row["prompt"],
                    target=row["target"],
                    task=row.get("task", ""),
                    kind=kind,
                    image_path=image_path,
                    points=[tuple(p) for p in row.get("points") or []],
                    answer=row.get("answer"),
                    seed=row.get("seed"),
                )
                if load_masks:
                    rec.masks = [_read_mask(base / m, f"{path}:{number}") for m in row.get("masks") or []]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise JsonlError(f"{path}:{number}: bad record ({err})") from None
            if not image_path.is_file():
                raise JsonlError(f"{path}:{number}: image {image_path} not found")
            records.append(rec)
    return records
