"""The station's questions and their answers from generator ground truth, in Molmo2's output format.

Each task has a canonical prompt (``TASKS``, what the demo station and the evaluation ask, defined
with the evaluation in edge_inspect/evaluation/tasks.py) and several phrasings that training draws
from (``PHRASINGS``); a negated question (``label_missing``) has the opposite answer, so the answer
follows the question and not only the picture.
"""

from __future__ import annotations

import numpy as np

from edge_inspect.evaluation.tasks import (
    POINT_LABELS,
    TASKS,
    YES_NO,
    Example,
    example,
    point_objects,
    reading_order,
    yes_no_answer,
)

__all__ = [
    "PHRASINGS",
    "POINT_LABELS",
    "TASKS",
    "YES_NO",
    "Example",
    "draw_phrasing",
    "example",
    "point_objects",
    "reading_order",
    "yes_no_answer",
]

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


def draw_phrasing(task: str, rng: np.random.Generator, canonical_share: float = 0.4) -> str:
    """A phrasing for training: the canonical prompt ``canonical_share`` of the time, else another."""
    options = PHRASINGS[task]
    if len(options) == 1 or rng.random() < canonical_share:
        return options[0]
    return options[int(rng.integers(1, len(options)))]
