"""The station's questions and their answers from generator ground truth, in Molmo2's output format."""

from __future__ import annotations

from dataclasses import dataclass

from edge_inspect.sim import GroundTruthObject, Part
from edge_inspect.vlm.points import format_molmo2_points

# task name → (prompt, kind). The demo station asks exactly these.
TASKS: dict[str, tuple[str, str]] = {
    "defects": ("Point to any surface defects.", "point"),
    "screws": ("Point to the screws.", "point"),
    "label": ("Is the label present?", "yes_no"),
}
POINT_LABELS = {"defects": "defect", "screws": "screw"}


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
    objects = part.defects if task == "defects" else part.screws if task == "screws" else []
    return reading_order(objects, part.width, part.height)


def example(part: Part, task: str) -> Example:
    prompt, kind = TASKS[task]
    if kind == "yes_no":
        answer = part.answers()["label_present"]
        return Example(task, prompt, "Yes." if answer else "No.", [], answer)
    points = [o.normalized(part.width, part.height) for o in point_objects(part, task)]
    return Example(task, prompt, format_molmo2_points(points, POINT_LABELS[task]), points, None)
