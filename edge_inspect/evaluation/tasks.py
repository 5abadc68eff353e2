"""The station's questions about a generated part and their answers from the generator's ground
truth, in Molmo2's output format: what the evaluation asks (``TASKS``, the canonical prompts the
demo station asks) and scores against. Training's other phrasings are tools/distill/tasks.py."""

from __future__ import annotations

from dataclasses import dataclass

from ..sim import GroundTruthObject, Part
from ..vlm.points import format_molmo2_points

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
