"""The records the evaluation scores: a prompt about one image with its ground truth (points and
masks, or a yes/no answer), from the part generator or read from a labelled set. The distillation
tools train on the same records (tools/distill/dataset.py: the JSONL format, training draws)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..sim import Camera, Part, PartSpec, render_part
from .tasks import TASKS, Example, example, point_objects

FRAME = (320, 240)  # the generated parts' frame (width, height)


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
    kinds: list[str] = field(default_factory=list)  # kinds[i]: the generator's kind of object i (evaluation)
    # Look-alikes a point task must not point at: a screw check's empty holes (evaluation)
    decoy_masks: list[np.ndarray] = field(default_factory=list)

    def rgb(self) -> np.ndarray:
        if self.image is not None:
            return self.image
        frame = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"{self.image_path}: cannot read image")
        return frame[:, :, ::-1].copy()


def from_part(part: Part, task: str, prompt: str | None = None) -> Record:
    ex: Example = example(part, task, prompt)
    objects = point_objects(part, task)  # masks[i] belongs to points[i]
    regions = {
        "defect": np.zeros(part.image.shape[:2], bool),
        "screw": np.zeros(part.image.shape[:2], bool),
        "label": part.label_mask if part.label_mask is not None else np.zeros(part.image.shape[:2], bool),
    }
    for obj in part.defects:
        regions["defect"] |= obj.mask
    for obj in part.screws:
        regions["screw"] |= obj.mask
    region_points = {
        "defect": [o.normalized(part.width, part.height) for o in part.defects],
        "screw": [o.normalized(part.width, part.height) for o in part.screws],
    }
    return Record(
        prompt=ex.prompt,
        target=ex.target,
        task=task,
        kind=TASKS[task][1],
        image=part.image[:, :, ::-1].copy(),
        points=ex.points,
        masks=[o.mask for o in objects],
        answer=ex.answer,
        seed=part.seed,
        region_masks=regions,
        region_points=region_points,
        kinds=[o.kind for o in objects],
        decoy_masks=[o.mask for o in part.of_kind("empty_hole")] if task == "screws" else [],
    )


def sim_records(
    seeds: range, tasks: list[str] | None = None, camera: Camera | None = None, spec: PartSpec | None = None
) -> list[Record]:
    """Every task on every generated part (images held in memory), seen by ``camera``; ``spec``: what
    the parts hold (e.g. only a new defect kind, ``PartSpec(defects=2, defect_kinds=("crack",))``)."""
    records = []
    for seed in seeds:
        part = render_part(seed, *FRAME, spec=spec, camera=camera)
        mine = [from_part(part, task) for task in tasks or list(TASKS)]
        for rec in mine[1:]:  # one array per part: a predictor encodes the image once for all its questions
            rec.image = mine[0].image
        records += mine
    return records
