"""Which inspections go to the QA review queue, and why (config ``review_sampling``, docs/log.md):
the cases worth a person's look — a frame unlike the commissioning frames (the unfamiliar-frame
guard), a check the model was not sure of, a yes/no answer with a small margin, a count that fails
by a point or two, every Nth PASS (escapes hide among passes), a part the shadow judged otherwise
than production (chosen afterwards, station/shadow.py) — at most
``per_hour`` in any hour and ``per_day`` in any 24 hours, so a bad hour does not bury QA."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from ..config import CountCheck, PointCheck, Recipe, ReviewSampling
from ..inspection.checks import CheckOutcome
from ..verdict import Verdict

if TYPE_CHECKING:
    from .unfamiliar import Judgement

HOUR_S, DAY_S = 3600.0, 86400.0


def _count_miss(check: PointCheck | CountCheck, counted: int) -> int:
    """How many points the count is outside its passing range (0: it passes)."""
    low, high = (check.expected, check.expected) if isinstance(check, CountCheck) else (check.min, check.max)
    return max(low - counted, counted - high, 0)


class ReviewSampler:
    """``choose`` is called from the inspection thread (one inspection at a time), ``choose_afterwards``
    from the shadow's thread: the caps they share are taken under a lock."""

    def __init__(self, rules: ReviewSampling):
        self.rules = rules
        self.passes = 0
        self.taken: deque[float] = deque(maxlen=max(rules.per_day, 1))  # when each sampled part was taken
        self.capped = 0  # parts a rule chose that the caps left out
        self._lock = threading.Lock()

    def seed(self, times: list[float]) -> None:
        """What the log says was sampled in the last day (a restart does not reset the caps)."""
        self.taken.extend(times[-self.taken.maxlen :] if self.taken.maxlen else times)

    def reasons(
        self, recipe: Recipe | None, verdict: Verdict, outcomes: list[CheckOutcome], unfamiliar: Judgement | None = None
    ) -> list[str]:
        """Why the rules choose this part (empty: they do not), before the caps. ``unfamiliar``: the
        unfamiliar-frame guard's judgement of the frame (None: not judged)."""
        rules, found = self.rules, []
        if verdict == Verdict.PASS:
            self.passes += 1
        flagged = unfamiliar is not None and unfamiliar.unfamiliar
        if rules.unfamiliar and unfamiliar is not None and flagged:
            found.append(f"unfamiliar image: score {unfamiliar.score:.1f} over {unfamiliar.threshold:.1f}")
        checks = {c.name: c for c in recipe.checks} if recipe is not None else {}
        for o in outcomes:
            check = checks.get(o.name)
            if (
                rules.uncertain
                and o.reason.startswith("uncertain:")
                and not (flagged and "unfamiliar image" in o.reason)
            ):
                found.append(f"uncertain: {o.name}")
            elif rules.low_margin is not None and o.margin is not None and o.margin < rules.low_margin:
                found.append(f"low margin: {o.name} {o.margin:.2f}")
            zero_tolerance = isinstance(check, PointCheck) and check.max == 0  # a point there is a defect, not an edge
            if rules.count_edge is not None and isinstance(check, PointCheck | CountCheck) and not zero_tolerance:
                miss = _count_miss(check, o.counted)
                if 0 < miss <= rules.count_edge:
                    found.append(f"count at the edge: {o.name} {o.counted}")
        if verdict == Verdict.PASS and rules.every_nth_pass and self.passes % rules.every_nth_pass == 0:
            found.append(f"one of every {rules.every_nth_pass} PASSes")
        return found

    def choose(
        self,
        recipe: Recipe | None,
        verdict: Verdict,
        outcomes: list[CheckOutcome],
        now: float,
        unfamiliar: Judgement | None = None,
    ) -> str:
        """The reason this part goes to review ("" when it does not), within the caps."""
        found = self.reasons(recipe, verdict, outcomes, unfamiliar)
        if not found or not self._within_caps(now):
            return ""
        return "; ".join(found)[:500]

    def choose_afterwards(self, reason: str, now: float) -> bool:
        """A part already logged that a later look chose (the shadow disagreed with it): whether the
        caps let it into the queue."""
        if reason == "shadow_disagreement" and not self.rules.shadow_disagreement:
            return False
        return self._within_caps(now)

    def _within_caps(self, now: float) -> bool:
        with self._lock:
            taken = list(self.taken)
            in_hour = sum(1 for t in taken if now - t < HOUR_S)
            in_day = sum(1 for t in taken if now - t < DAY_S)
            if in_hour >= self.rules.per_hour or in_day >= self.rules.per_day:
                self.capped += 1
                return False
            self.taken.append(now)
            return True

    def status(self, now: float) -> dict[str, int]:
        """Sampled in the last hour and day, and left out by the caps (any thread: reads a copy)."""
        taken = list(self.taken)
        return {
            "last_hour": sum(1 for t in taken if now - t < HOUR_S),
            "last_day": sum(1 for t in taken if now - t < DAY_S),
            "capped": self.capped,
        }
