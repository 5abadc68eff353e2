"""Check kinds and verdict rules: pure functions, no model, no I/O.

* point — pass when the number of points inside the ROI is within [min, max] (max 0 = "no defects")
* count — pass when the number of points inside the ROI equals ``expected``
* qa    — pass when the yes/no answer equals ``expect``; a margin below ``min_margin``, or less
          than ``min_mass`` of the next-token probability on the yes/no tokens at all (a question
          the model does not understand), is uncertain and resolved by ``on_uncertain``
          (fail-safe by default)

An unreadable model answer is an ERROR, never a PASS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..config import CountCheck, PointCheck, QACheck
from ..verdict import Verdict

Status = Literal["pass", "fail", "error"]


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    kind: str
    status: Status
    reason: str
    points: list[tuple[float, float]] = field(default_factory=list)  # frame fractions, inside the ROI
    counted: int = 0
    answer: str = ""
    p_yes: float | None = None
    margin: float | None = None
    ms: float = 0.0
    mass: float | None = None  # yes/no checks: probability mass on the yes/no tokens
    view: str = ""  # the camera whose frame it looked at (a station's camera name; "": the one frame given)


def inside(points: list[tuple[float, float]], roi: list[tuple[float, float]] | None) -> list[tuple[float, float]]:
    """The points inside the polygon (all of them when there is no ROI). Edges count as inside."""
    if roi is None:
        return list(points)
    poly = np.asarray(roi, dtype=float)
    kept = []
    for x, y in points:
        crossings = 0
        on_edge = False
        for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            if min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2):
                if abs((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) < 1e-9:
                    on_edge = True
                    break
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                crossings += 1
        if on_edge or crossings % 2 == 1:
            kept.append((x, y))
    return kept


def judge_points(
    check: PointCheck | CountCheck, points: list[tuple[float, float]], malformed: bool, answer: str, ms: float = 0.0
) -> CheckOutcome:
    if malformed:
        return CheckOutcome(
            check.name, check.kind, "error", f"unreadable model answer: {answer[:80]!r}", answer=answer, ms=ms
        )
    counted = inside(points, check.roi)
    n = len(counted)
    if isinstance(check, CountCheck):
        ok = n == check.expected
        reason = f"counted {n}, expected {check.expected}"
    else:
        ok = check.min <= n <= check.max
        reason = f"found {n}, allowed {check.min}..{check.max}"
    return CheckOutcome(check.name, check.kind, "pass" if ok else "fail", reason, counted, n, answer, ms=ms)


def judge_qa(check: QACheck, p_yes: float, margin: float, ms: float = 0.0, mass: float | None = None) -> CheckOutcome:
    """``mass``: how much of the next-token probability fell on yes/no tokens (None: not known, not judged)."""
    said = "yes" if p_yes >= 0.5 else "no"
    detail = f"answered {said} (p_yes {p_yes:.2f}, margin {margin:.2f}), expected {check.expect}"
    common: dict[str, Any] = dict(answer=said, p_yes=p_yes, margin=margin, ms=ms, mass=mass)
    low_mass = mass is not None and mass < check.min_mass
    if margin < check.min_margin or low_mass:
        uncertain: dict[str, Status] = {"fail": "fail", "error": "error", "pass": "pass"}
        status = uncertain[check.on_uncertain]
        why = f"yes/no mass {mass:.2f} below {check.min_mass:.2f}; " if low_mass else ""
        return CheckOutcome(check.name, check.kind, status, f"uncertain: {why}{detail}", **common)
    return CheckOutcome(check.name, check.kind, "pass" if said == check.expect else "fail", detail, **common)


def error_outcome(check, reason: str) -> CheckOutcome:
    return CheckOutcome(check.name, check.kind, "error", reason)


def verdict(outcomes: list[CheckOutcome]) -> Verdict:
    """ERROR if any check errored (or there are none), else FAIL if any failed, else PASS."""
    if not outcomes or any(o.status == "error" for o in outcomes):
        return Verdict.ERROR
    if any(o.status == "fail" for o in outcomes):
        return Verdict.FAIL
    return Verdict.PASS


def failed_mask(outcomes: list[CheckOutcome]) -> int:
    """Bit i set when check i did not pass."""
    return sum(1 << i for i, o in enumerate(outcomes) if o.status != "pass")


def defect_count(outcomes: list[CheckOutcome]) -> int:
    """Points found by 'point' checks (the defect checks)."""
    return sum(o.counted for o in outcomes if o.kind == "point")
