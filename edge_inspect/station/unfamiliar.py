"""The unfamiliar-frame guard at run time (config ``unfamiliar``, docs/model-lifecycle.md): each view
an inspection encoded is scored against the reference of the running model version and the recipe
(station/references.py); a view past its threshold makes its checks ERROR (or uncertain) with the
reason "unfamiliar image", and the share of such parts over the last ``alarm_window`` parts raises
the alarm ``unfamiliar_images``.

``judge`` runs in the inspection thread (it reads a reference file when it is new or has changed:
a reference built while the station runs is used from the next part); ``alarm`` and ``status`` read
what it left, on the event loop, without I/O.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..config import Recipe, UnfamiliarGuard
from ..inspection.familiarity import mark_unfamiliar
from ..inspection.inspector import Inspection
from . import references
from .references import RecipeReference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """The most unfamiliar view of one part: its score against its threshold."""

    score: float
    threshold: float
    view: str

    @property
    def unfamiliar(self) -> bool:
        return self.score > self.threshold


class Guard:
    def __init__(self, settings: UnfamiliarGuard, data_dir: Path):
        self.settings, self.data_dir = settings, data_dir
        self.window: deque[bool] = deque(maxlen=settings.alarm_window)  # the last parts judged: unfamiliar?
        # (version, recipe) -> (the file's mtime_ns, its reference; None: no file or an unreadable one)
        self._cache: dict[tuple[str, int], tuple[int | None, RecipeReference | None]] = {}
        self._state = "not started" if settings.enabled else "off (unfamiliar.enabled: false)"
        self._last: Judgement | None = None
        self._problems: dict[int, str] = {}  # recipe -> why it runs without a guard

    # -- inspection thread / worker threads ------------------------------------------------------
    def reference(self, version: str, recipe: int) -> RecipeReference | None:
        """The recipe's reference for ``version``, read again when its file changed (blocking)."""
        path = references.reference_path(self.data_dir, version, recipe)
        try:
            mtime: int | None = path.stat().st_mtime_ns
        except OSError:
            mtime = None
        cached = self._cache.get((version, recipe))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        ref = None
        if mtime is None:
            self._problems[recipe] = f"no reference for recipe {recipe} of model {version[:12]}"
        else:
            try:
                ref = references.load(path)
                self._problems.pop(recipe, None)
                log.info("unfamiliar-frame guard: %s read (%d views)", path, len(ref.views))
            except ValueError as err:
                self._problems[recipe] = str(err)
                log.warning("unfamiliar-frame guard: %s", err)
        self._cache[(version, recipe)] = (mtime, ref)
        return ref

    def load(self, version: str, recipes: list[Recipe]) -> None:
        """Read every recipe's reference now (at start, off the loop), so the status tells at once."""
        if self.settings.enabled:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == version}
            for recipe in recipes:
                self.reference(version, recipe.number)
            self._update_state(version, recipes)

    def _update_state(self, version: str, recipes: list[Recipe]) -> None:
        missing = [self._problems[r.number] for r in recipes if r.number in self._problems]
        if not missing:
            self._state = "on"
        elif len(missing) == len(recipes):
            self._state = f"off: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        else:
            self._state = f"on, except: {'; '.join(missing)}"

    def judge(
        self, recipe: Recipe, inspection: Inspection, version: str, recipes: list[Recipe]
    ) -> tuple[Inspection, Judgement | None]:
        """Score the inspection's views; the inspection with unfamiliar views' checks marked, and the
        most unfamiliar view (None: no reference for this recipe and model, or the guard is off)."""
        if not self.settings.enabled:
            return inspection, None
        ref = self.reference(version, recipe.number)
        self._update_state(version, recipes)
        if ref is None:
            return inspection, None
        worst: Judgement | None = None
        flagged: dict[str, str] = {}
        for view in inspection.views:
            view_ref = ref.views.get(view.key)
            if view_ref is None or view.pooled is None or len(view.pooled) != len(view_ref.mean):
                continue
            j = Judgement(view_ref.score(view.pooled), view_ref.threshold, view.key)
            if j.unfamiliar:
                flagged[view.key] = f"score {j.score:.1f} over {j.threshold:.1f}" + (
                    f", {view.key}" if view.key != "frame" else ""
                )
            if worst is None or j.score / j.threshold > worst.score / worst.threshold:
                worst = j
        if worst is None:
            return inspection, None
        self.window.append(worst.unfamiliar)
        self._last = worst
        return mark_unfamiliar(inspection, flagged, self.settings.action), worst

    # -- event loop: no I/O --------------------------------------------------------------------
    def alarm(self) -> str | None:
        """The alarm's message while more than ``alarm_share`` of the last ``alarm_window`` parts were
        unfamiliar; None when not."""
        flags = list(self.window)
        count, bound = sum(flags), self.settings.alarm_share * self.settings.alarm_window
        if count <= bound:
            return None
        return (
            f"{count} of the last {len(flags)} parts were unfamiliar images (wrong part, covered lens, "
            f"changed light?); at most {self.settings.alarm_share:.0%} of {self.settings.alarm_window} allowed"
        )

    def status(self) -> dict:
        flags = list(self.window)
        last = self._last
        return {
            "state": self._state,
            "action": self.settings.action,
            "window": {"parts": len(flags), "unfamiliar": sum(flags), "of": self.settings.alarm_window},
            "last": None
            if last is None
            else {"score": round(last.score, 2), "threshold": round(last.threshold, 2), "view": last.view},
        }
