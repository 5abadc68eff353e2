"""The station follows the model store's alias its config names (``model.bundle: production``): when
the alias moves (``edge-inspect model promote`` / ``rollback``, or the setup page), the new version is
loaded beside the running one, off the event loop, and swapped in between two inspections with
`ready` low only for the swap. The first parts a new production version judges are watched; when its
ERROR or uncertain share or its cycle time crosses the configured bounds, production goes back to the last known
good version by itself (also when too many of its frames are unfamiliar images), with an alarm and a row in the store's history (docs/model-lifecycle.md)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import StationConfig
from ..config.devices import AutoRollback
from ..modelstore import ModelStore, ModelStoreError
from ..vlm import VisionLanguageModel
from .events import Event, EventBus, InspectionDone, ModelChanged
from .ports import Alarms

log = logging.getLogger(__name__)

Entry = tuple[str, str, str]  # a history entry of the store: (action, when, by)
CHECK_EVERY_S = 2.0  # how soon a moved alias is noticed
AUTO_USER = "station (auto-rollback)"


class ModelHost(Alarms, Protocol):
    """What the follower uses of the station: the model version that judges, its config, its events,
    and the swap."""

    config: StationConfig
    model_sha256: str
    events: EventBus

    async def swap_model(self, model: VisionLanguageModel) -> str: ...

    def call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None: ...


@dataclass
class Watch:
    """The first ``bounds.parts`` parts of a new production version: ERROR, uncertain and unfamiliar
    shares, cycle p95."""

    version: str
    bounds: AutoRollback
    previous: str | None = None  # the version that ran before it: where a rollback goes
    verdicts: list[str] = field(default_factory=list)
    cycles_ms: list[float] = field(default_factory=list)
    uncertain: int = 0  # parts with a check the model was not sure of
    unfamiliar: int = 0  # parts the unfamiliar-frame guard flagged

    def add(self, verdict: str, cycle_ms: float, uncertain: bool = False, unfamiliar: bool = False) -> None:
        if len(self.verdicts) < self.bounds.parts:
            self.verdicts.append(verdict)
            self.cycles_ms.append(cycle_ms)
            self.uncertain += uncertain
            self.unfamiliar += unfamiliar

    @property
    def done(self) -> bool:
        return len(self.verdicts) >= self.bounds.parts

    def crossed(self) -> str | None:
        """Why the version fails its watch ("" when it holds), judged once all its parts are in (None before)."""
        if not self.done or not self.verdicts:
            return None
        errors = self.verdicts.count("ERROR") / len(self.verdicts)
        if errors > self.bounds.max_error_share:
            return f"ERROR on {errors:.0%} of its first {len(self.verdicts)} parts (at most {self.bounds.max_error_share:.0%})"
        unsure = self.uncertain / len(self.verdicts)
        if self.bounds.max_uncertain_share is not None and unsure > self.bounds.max_uncertain_share:
            return (
                f"uncertain on {unsure:.0%} of its first {len(self.verdicts)} parts"
                f" (at most {self.bounds.max_uncertain_share:.0%})"
            )
        strange = self.unfamiliar / len(self.verdicts)
        if self.bounds.max_unfamiliar_share is not None and strange > self.bounds.max_unfamiliar_share:
            return (
                f"unfamiliar images on {strange:.0%} of its first {len(self.verdicts)} parts"
                f" (at most {self.bounds.max_unfamiliar_share:.0%})"
            )
        limit = self.bounds.max_cycle_p95_ms
        if limit is not None:
            ordered = sorted(self.cycles_ms)
            p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
            if p95 > limit:
                return f"cycle p95 {p95:.0f} ms over its first {len(ordered)} parts (at most {limit:.0f} ms)"
        return ""


class ModelFollower:
    """Attached by the composition root when ``model.bundle`` names an alias of the model store."""

    def __init__(
        self,
        station: ModelHost,
        store: ModelStore,
        alias: str,
        load: Callable[[str], VisionLanguageModel],
        judged_any: Callable[[str], bool] = lambda version: True,
        check_every_s: float = CHECK_EVERY_S,
    ):
        """``judged_any(version)``: whether the log holds a part that version judged (a version
        promoted while the station was stopped has judged none: it is watched from the start)."""
        self.station, self.store, self.alias, self.load = station, store, alias, load
        self.judged_any = judged_any
        self.check_every_s = check_every_s
        self.state = "following"
        # version -> (why it is not swapped in, the alias's history entry then): tried again only
        # once the alias is moved anew (promoted again after a rollback, or a fixed copy added)
        self.failed: dict[str, tuple[str, Entry]] = {}
        self.watch: Watch | None = None
        self.unreadable = False  # the store's state file could not be read at the last check
        self.last_change: dict[str, Any] | None = None
        self._task: asyncio.Task | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        self._unsubscribe = self.station.events.subscribe(self._on_event)
        running = self.station.model_sha256
        target, entry = await asyncio.to_thread(self._target)
        promoted = target == running and entry[0] == "promote"
        if promoted and self._watched() and not await asyncio.to_thread(self.judged_any, running):
            self._begin_watch(running, self._previous_production(running))
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="model-follower")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        watch = self.watch
        return {
            "model_follow": {
                "alias": self.alias,
                "state": self.state,
                "watch": None
                if watch is None
                else {
                    "version": watch.version[:12],
                    "parts": len(watch.verdicts),
                    "of": watch.bounds.parts,
                },  # fmt: skip
                "last_change": self.last_change,
                "failed": {v[:12]: why for v, (why, _) in self.failed.items()},
            }
        }

    # -- following ---------------------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # a follower that stops following would leave the line on a stale model
                log.exception("model follower: checking alias %s failed", self.alias)
            await asyncio.sleep(self.check_every_s)

    async def check(self) -> bool:
        """Swap in the version the alias names now, if it is another one; True when it swapped."""
        target, entry = await asyncio.to_thread(self._target)
        if target is None:
            return False
        if target == self.station.model_sha256:  # back where it runs (a rollback after a failed swap)
            self.station.clear_alarm("model_swap_failed")
            return False
        if target in self.failed and self.failed[target][1] == entry:
            return False
        self.state = f"loading {target[:12]}"
        try:
            path = await asyncio.to_thread(lambda: str(self.store.find(target).path))
            model = await asyncio.to_thread(self.load, path)
        except Exception as err:  # noqa: BLE001 - any load failure keeps the running model
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.failed[target] = (why, entry)
            self.state = "following"
            self.station.raise_alarm("model_swap_failed", f"model {target[:12]} ({self.alias}) not loaded: {why}")
            return False
        if model.sha256 != target:
            self.failed[target] = (f"its files hash to {model.sha256[:12]}", entry)
            self.state = "following"
            self.station.raise_alarm("model_swap_failed", f"model {target[:12]} ({self.alias}): files changed")
            return False
        previous = await self.station.swap_model(model)
        self.station.clear_alarm("model_swap_failed")
        reason = "promote" if entry[0] != "rollback" else "auto-rollback" if entry[2] == AUTO_USER else "rollback"
        self.last_change = {"version": target, "previous": previous, "reason": reason}
        self.watch, self.state = None, "following"
        if reason == "promote" and self._watched():
            self._begin_watch(target, previous)
        log.info("model %s (%s) judges from now on, replacing %s (%s)", target[:12], self.alias, previous[:12], reason)
        self.station.events.publish(ModelChanged(target, previous, self.alias, reason))
        return True

    def _watched(self) -> bool:
        return self.alias == "production" and self.station.config.model.auto_rollback.parts > 0

    def _begin_watch(self, version: str, previous: str | None) -> None:
        self.watch = Watch(version, self.station.config.model.auto_rollback, previous=previous)
        self.state = "watching"

    def _previous_production(self, version: str) -> str | None:
        """The production before ``version`` in the store's history (a restart lost what ran before)."""
        try:
            history = self.store.state()["history"]
        except ModelStoreError:
            return None
        for item in reversed(history):
            if isinstance(item, dict) and item.get("alias") == "production" and item.get("version") == version:
                previous = item.get("previous")
                return str(previous) if previous else None
        return None

    def _target(self) -> tuple[str | None, Entry]:
        """The version the alias names, and the newest history entry that moved it (action, when, by).
        An unreadable store keeps the running model and raises the alarm ``model_store``."""
        try:
            state = self.store.state()
        except ModelStoreError as err:
            why = str(err).splitlines()[0]
            self.station.call_soon_threadsafe(self._store_unreadable, why)
            return None, ("", "", "")
        if self.unreadable:
            self.station.call_soon_threadsafe(self._store_readable)
        target = state["aliases"].get(self.alias)
        for item in reversed(state["history"]):
            if isinstance(item, dict) and item.get("alias") == self.alias:
                return target, (str(item.get("action", "")), str(item.get("at", "")), str(item.get("by", "")))
        return target, ("", "", "")

    def _store_readable(self) -> None:
        self.unreadable = False
        if self.state == "store unreadable":
            self.state = "watching" if self.watch is not None else "following"
        self.station.clear_alarm("model_store")

    def _store_unreadable(self, why: str) -> None:
        self.unreadable = True
        self.state = "store unreadable"
        self.station.raise_alarm("model_store", f"the model store cannot be read, the running model stays: {why}")

    # -- watching ----------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        watch = self.watch
        if watch is None or not isinstance(event, InspectionDone) or watch.version != self.station.model_sha256:
            return
        unsure = any(c.reason.startswith("uncertain:") for c in event.checks)
        watch.add(event.verdict, event.timings_ms.get("cycle_ms", 0.0), unsure, event.unfamiliar)
        why = watch.crossed()
        if why is None:
            return
        self.watch = None
        self.state = "following"
        if why:
            asyncio.get_running_loop().create_task(self._roll_back(watch, why), name="model-rollback")

    async def _roll_back(self, watch: Watch, why: str) -> None:
        """Production back to the version that ran before the watched one (known to load and run on
        this station), only while production is still the watched version; then swapped in."""
        version = watch.version
        try:
            back, _ = await asyncio.to_thread(
                lambda: self.store.rollback(AUTO_USER, to=watch.previous, only_from=version)
            )
        except ModelStoreError as err:
            self.station.raise_alarm("model_watch", f"model {version[:12]}: {why}; no rollback: {err}")
            return
        self.station.raise_alarm("model_rolled_back", f"model {version[:12]} rolled back to {back.short}: {why}")
        await self.check()
