"""The station's questions and their answers from generator ground truth, in Molmo2's output format.

Each task has a canonical prompt (``TASKS``, what the demo station and the evaluation ask) and
several phrasings that training draws from (``PHRASINGS``); a negated question (``label_missing``)
has the opposite answer, so the answer follows the question and not only the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_inspect.sim import GroundTruthObject, Part
from edge_inspect.vlm.points import format_molmo2_points

# task name → (canonical prompt, kind). The demo station asks these.
TASKS: dict[str, tuple[str, str]] = {
    "defects": ("Point to any surface defects.", "point"),
    "screws": ("Point to the screws.", "point"),
    "label": ("Is the label present?", "yes_no"),
    "label_missing": ("Is the label missing?", "yes_no"),
    "holes": ("Point to the empty screw holes.", "point"),
}
POINT_LABELS = {"defects": "defect", "screws": "screw", "holes": "hole"}
# yes/no task → (ground-truth answer key of Part.answers(), negated)
YES_NO = {"label": ("label_present", False), "label_missing": ("label_present", True)}

# Training draws a phrasing per example; the first is the canonical prompt.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "defects": (
        "Point to any surface defects.",
        "Point to the defects.",
        "Point to the surface defects.",
        "Point to any defects.",
        "Point to the scratches, spots and dents.",
        "Where are the defects?",
        "Show the defects on the part.",
    ),
    "screws": (
        "Point to the screws.",
        "Point to each screw.",
        "Point to the installed screws.",
        "Where are the screws?",
        "Point to every screw in the plate.",
    ),
    "holes": (
        "Point to the empty screw holes.",
        "Point to the holes without a screw.",
        "Where are the empty holes?",
        "Point to the missing screws.",
    ),
    "label": (
        "Is the label present?",
        "Is there a label?",
        "Is the label on the part?",
        "Does the part have a label?",
        "Is a label visible?",
    ),
    "label_missing": (
        "Is the label missing?",
        "Is the label absent?",
        "Is there no label?",
        "Does the part lack a label?",
        "Is the label not there?",
    ),
}
assert all(PHRASINGS[t][0] == p for t, (p, _) in TASKS.items())


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    target: str
    points: list[tuple[float, float]]  # normalized ground-truth points (point tasks)
    answer: bool | None  # yes/no ground truth


def reading_order(objects: list[GroundTruthObject], width: int, height: int) -> list[GroundTruthObject]:
    """Top to bottom in bands of 10% of the height, then left to right: a stable order to learn."""

    def key(o: GroundTruthObject) -> tuple[int, float]:
        x, y = o.normalized(width, height)
        return round(y * 10), x

    return sorted(objects, key=key)


def point_objects(part: Part, task: str) -> list[GroundTruthObject]:
    """The objects a point task answers with, in the order the answer lists them."""
    objects = {"defects": part.defects, "screws": part.screws, "holes": part.of_kind("empty_hole")}.get(task, [])
    return reading_order(objects, part.width, part.height)


def yes_no_answer(part: Part, task: str) -> bool:
    key, negated = YES_NO[task]
    return part.answers()[key] != negated


def example(part: Part, task: str, prompt: str | None = None) -> Example:
    """The example for ``task`` asked with ``prompt`` (default: the canonical prompt)."""
    canonical, kind = TASKS[task]
    prompt = prompt or canonical
    if kind == "yes_no":
        answer = yes_no_answer(part, task)
        return Example(task, prompt, "Yes." if answer else "No.", [], answer)
    points = [o.normalized(part.width, part.height) for o in point_objects(part, task)]
    return Example(task, prompt, format_molmo2_points(points, POINT_LABELS[task]), points, None)


def draw_phrasing(task: str, rng: np.random.Generator, canonical_share: float = 0.4) -> str:
    """A phrasing for training: the canonical prompt ``canonical_share`` of the time, else another."""
    options = PHRASINGS[task]
    if len(options) == 1 or rng.random() < canonical_share:
        return options[0]
    return options[int(rng.integers(1, len(options)))]
