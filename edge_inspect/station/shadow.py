"""Shadow on the line (docs/model-lifecycle.md): a candidate version judges live frames beside
production without the PLC ever seeing it, bounded by parts and hours, then ends by itself.

The order that keeps production untouched:

1. production judges, logs its row and signals the PLC as ever; the inspection thread only *holds*
   the frame for the shadow (``hold``: a reference, no copy);
2. once the result is out (`results_valid` written, or the inspection returned for a trigger that
   is not the PLC's), ``release`` hands the frame to the shadow's thread — or skips the part, counted,
   when the line is busy: the next trigger already accepted, or the shadow still judging earlier
   frames (``model.shadow.max_waiting``);
3. the shadow's thread sends it to the shadow process (station/shadow_process.py, SCHED_IDLE) and
   writes the verdict to the log's shadow tables (logbook/shadow.py) while no inspection runs; a
   disagreement goes to the QA queue through review sampling's caps, with the frame kept;
4. while production inspects, the shadow process is stopped outright (SIGSTOP at the start of an
   inspection, SIGCONT once its result is out): SCHED_IDLE keeps it off a core production wants, but
   not off the caches and memory bus the two models share; a stopped process touches neither.

Runs are asked for through the model store (``edge-inspect model shadow start``, the setup page) or
by the config (``model.shadow.auto``); a run a stop cut short resumes at the next start
(``model.shadow.on_restart``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Recipe, StationConfig
from ..logbook import InspectionRecord, Store
from ..logbook import shadow as shadow_log
from ..modelstore import ModelStore, ModelStoreError, read_request
from .events import EventBus, ShadowChanged
from .ports import Alarms
from .review_sampling import ReviewSampler
from .shadow_process import Judged, ShadowProcess, ShadowProcessError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
CHECK_EVERY_S = 2.0
IDLE_WRITE_S = 0.5  # results waiting for a quiet moment are written after this long without a new part
_STOP = object()


class ShadowHost(Alarms, Protocol):
    """What the shadow uses of the station: its config, log, sampler, events, the running version,
    whether an inspection runs or waits, and its loop."""

    config: StationConfig
    store: Store
    sampler: ReviewSampler
    events: EventBus
    model_sha256: str

    @property
    def inspecting(self) -> bool: ...

    def call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None: ...


@dataclass
class Job:
    inspection_id: int
    rec: InspectionRecord
    frame: np.ndarray
    recipe: Recipe
    out_at: float  # monotonic: production's result was out


@dataclass
class Run:
    id: int
    version: str
    parts: int
    hours: float
    started_at: float  # unix
    by: str
    request_seq: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(shadow_log.COUNTS, 0))
    process: ShadowProcess | None = None
    jobs: queue.Queue = field(default_factory=queue.Queue)
    handed: int = 0  # frames handed to the thread (counted on the loop only)
    finished: int = 0  # frames the thread is done with (counted by the thread only)
    ms: deque = field(default_factory=lambda: deque(maxlen=200))  # the shadow's recent CPU time per part
    thread: threading.Thread | None = None
    ending: bool = False
    unfamiliar: int = 0  # shadowed parts production's unfamiliar-frame guard flagged: in no agreement

    @property
    def outstanding(self) -> int:
        """Frames handed over and not yet judged and written."""
        return self.handed - self.finished

    def status(self) -> dict[str, Any]:
        c = self.counts
        compared = c["shadowed"] - self.unfamiliar
        ordered = sorted(self.ms)
        return {
            "run": self.id, "version": self.version[:12], "started_at": self.started_at, "by": self.by,
            "parts": self.parts, "hours": self.hours,
            "ends_at": self.started_at + self.hours * 3600 if self.hours else None,
            "shadowed": c["shadowed"], "skipped": c["skipped_line"] + c["skipped_shadow"],
            "skipped_line": c["skipped_line"], "skipped_shadow": c["skipped_shadow"],
            "disagreements": c["disagreements"], "unfamiliar": self.unfamiliar,
            "agreement": round((compared - c["disagreements"]) / compared, 4) if compared else None,
            "shadow_cpu_ms_p50": round(ordered[len(ordered) // 2], 1) if ordered else None,
            "scheduling": self.process.scheduling if self.process is not None else "",
        }  # fmt: skip


def compare(rec: InspectionRecord, judged: Judged) -> tuple[bool, list[bool], list[str]]:
    """(verdict agrees, per production check: the shadow's result agrees, what differs)."""
    verdict_agrees = judged.verdict == rec.verdict.name
    by_check = [
        i < len(judged.outcomes) and judged.outcomes[i].name == o.name and judged.outcomes[i].status == o.status
        for i, o in enumerate(rec.outcomes)
    ]
    differing = ([] if verdict_agrees else ["verdict"]) + [
        o.name for o, ok in zip(rec.outcomes, by_check, strict=True) if not ok
    ]
    return verdict_agrees, by_check, differing


class Shadow:
    """Attached by the composition root to a station with a model store; idle until a run is asked for."""

    def __init__(self, station: ShadowHost, models: ModelStore, check_every_s: float = CHECK_EVERY_S):
        self.station, self.models = station, models
        self.settings = station.config.model.shadow
        self.check_every_s = check_every_s
        self.run: Run | None = None
        self.state = "off"  # off | starting | running | ended | failed
        self.ended: dict[str, Any] | None = None  # the last run's end: run, version, reason, at, counts
        self._held: tuple[InspectionRecord, np.ndarray, int] | None = None
        self._seen_seq = 0  # the newest request acted on (the log's runs remember it across restarts)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._paused: ShadowProcess | None = None  # the process stopped while production inspects

    # -- production first: the shadow process stopped while an inspection runs -----------------
    def pause(self) -> None:
        """On the loop, as an inspection begins (a syscall, no waiting)."""
        run = self.run
        if self._paused is None and run is not None and run.process is not None and run.process.pause():
            self._paused = run.process

    def resume(self) -> None:
        """On the loop, once a result is out (and by the check loop, should a result never come out)."""
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.resume()

    # -- the hook the station calls ------------------------------------------------------------
    def hold(self, rec: InspectionRecord, frame: np.ndarray | None, inspection_id: int | None) -> None:
        """Inspection thread, after the log row is committed: keep the frame for ``release``."""
        run = self.run
        self._held = (rec, frame, inspection_id) if run is not None and frame is not None and inspection_id else None

    def release(self, result_id: int) -> None:
        """On the loop, once production's result for ``result_id`` is out: the held frame to the
        shadow, or a skipped part when the line or the shadow is busy."""
        held, self._held = self._held, None
        self.resume()
        run = self.run
        if held is None or run is None or run.ending or held[0].result_id != result_id:
            return
        rec, frame, inspection_id = held
        if run.version == self.station.model_sha256:
            return  # promoted while it ran: the next check ends the run
        c = run.counts
        if run.parts and c["shadowed"] + run.outstanding >= run.parts:
            return  # enough parts are in or on their way
        if self.station.inspecting:  # the next trigger is already accepted: production first
            c["skipped_line"] += 1
            return
        if run.outstanding > self.settings.max_waiting:
            c["skipped_shadow"] += 1
            return
        recipe = self.station.config.recipe(rec.recipe)
        if recipe is None:
            return
        run.handed += 1
        run.jobs.put(Job(inspection_id, rec, frame, recipe, time.monotonic()))

    # -- the shadow's thread --------------------------------------------------------------------
    def _work(self, run: Run) -> None:
        """Judge handed-over frames one at a time; write the results while no inspection runs."""
        done: list[tuple[Job, Judged, float]] = []
        last_job = time.monotonic()
        while True:
            try:
                job = run.jobs.get(timeout=IDLE_WRITE_S / 2)
            except queue.Empty:
                job = None
            quiet = not self.station.inspecting
            if done and (quiet or job is not None or time.monotonic() - last_job > 5 * IDLE_WRITE_S):
                self._write(run, done)
                done = []
            if job is None:
                continue
            if job is _STOP:
                if done:
                    self._write(run, done)
                return
            last_job = time.monotonic()
            started = time.monotonic()
            assert run.process is not None
            try:
                judged = run.process.judge(job.frame, job.recipe)
            except ShadowProcessError as err:
                run.finished += 1
                self.station.call_soon_threadsafe(self._failed_while_running, run, str(err))
                continue
            done.append((job, judged, (started - job.out_at) * 1000))
            run.ms.append(judged.cpu_ms)
            if not self.station.inspecting:
                self._write(run, done)
                done = []

    def _write(self, run: Run, done: list[tuple[Job, Judged, float]]) -> None:
        """The shadow rows, then the disagreements into review (within the caps), in this thread.

        A part production's unfamiliar-frame guard flagged is logged but not compared: production's
        verdict there is the guard's (ERROR, or a check failed as uncertain), not its model's, and the
        shadow process runs no guard; counting it would make every such frame a disagreement."""
        for job, judged, waited_ms in done:
            compared = not job.rec.unfamiliar
            verdict_agrees, by_check, differing = compare(job.rec, judged)
            result = shadow_log.ShadowResult(
                inspection_id=job.inspection_id, version=run.version, run_id=run.id, verdict=judged.verdict,
                error=judged.error, outcomes=judged.outcomes, agrees_by_check=by_check, verdict_agrees=verdict_agrees,
                inspect_ms=judged.wall_ms, cpu_ms=judged.cpu_ms, waited_ms=waited_ms, at=time.time(),
                differing=differing if compared else [], compared=compared,
            )  # fmt: skip
            disagrees = compared and not result.agrees
            run.counts["shadowed"] += 1
            run.counts["disagreements"] += disagrees
            run.unfamiliar += not compared
            run.finished += 1
            try:
                shadow_log.record(self.station.store, result, dict(run.counts))
                if disagrees and self.station.sampler.choose_afterwards("shadow_disagreement", time.time()):
                    reason = f"shadow_disagreement: {', '.join(differing)}"
                    self.station.store.sample_afterwards(job.inspection_id, job.rec, job.frame, reason)
            except Exception:  # a full disk must not stop the shadow's thread; the counts still tell
                log.warning("shadow: could not log inspection %d", job.inspection_id, exc_info=True)
        if run.parts and run.counts["shadowed"] >= run.parts:
            self.station.call_soon_threadsafe(self._end_soon, run, f"{run.parts} parts shadowed")

    # -- runs -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume or end the run a stop cut short, then check the store's request every few seconds."""
        store = self.station.store
        runs = await asyncio.to_thread(shadow_log.open_runs, store)
        self._seen_seq = max((r["request_seq"] or 0 for r in runs), default=0)
        latest = await asyncio.to_thread(shadow_log.latest_run, store)
        if latest is not None:
            self._seen_seq = max(self._seen_seq, latest["request_seq"] or 0)
            if latest["ended_at"] is not None:
                unfamiliar = await asyncio.to_thread(shadow_log.unfamiliar_count, store, latest["id"])
                self.ended = {"run": latest["id"], "version": latest["version"][:12], "reason": latest["end_reason"],
                              "at": latest["ended_at"],
                              "counts": {**{k: latest[k] for k in shadow_log.COUNTS}, "unfamiliar": unfamiliar}}  # fmt: skip
                self.state = "ended"
        for stale in runs[:-1]:
            await asyncio.to_thread(shadow_log.end_run, store, stale["id"], "station restarted", time.time())
        if runs:
            await self._resume(runs[-1])
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="shadow")

    async def _resume(self, row: dict[str, Any]) -> None:
        now = time.time()
        why = ""
        if self.settings.on_restart == "end":
            why = "station restarted (model.shadow.on_restart: end)"
        elif row["hours_bound"] and now >= row["started_at"] + row["hours_bound"] * 3600:
            why = f"{row['hours_bound']:g} hours passed"
        elif row["version"] == self.station.model_sha256:
            why = "its version is production now"
        if why:
            await asyncio.to_thread(shadow_log.end_run, self.station.store, row["id"], why, now)
            self._note_end(row["id"], row["version"], why, now)
            return
        counts = {k: int(row[k] or 0) for k in shadow_log.COUNTS}
        run = Run(row["id"], row["version"], int(row["parts_bound"] or 0), float(row["hours_bound"] or 0),
                  row["started_at"], row["started_by"] or "", int(row["request_seq"] or 0), counts)  # fmt: skip
        run.unfamiliar = await asyncio.to_thread(shadow_log.unfamiliar_count, self.station.store, run.id)
        log.info(
            "shadow run %d of %s resumes after a restart (%d parts so far)",
            run.id,
            run.version[:12],
            counts["shadowed"],
        )
        await self._launch(run, resumed=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        run = self.run
        if run is not None:  # left open in the log: the next start resumes it (or ends it, on_restart)
            await self._shut(run)
            await asyncio.to_thread(shadow_log.save_counts, self.station.store, run.id, dict(run.counts))
            self.run = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # a shadow that stops checking would never end
                log.exception("shadow: check failed")
            await asyncio.sleep(self.check_every_s)

    async def check(self) -> None:
        """Act on a new request, start an automatic run, end a run past its bounds."""
        async with self._lock:
            try:
                request = await asyncio.to_thread(read_request, self.models)
            except ModelStoreError as err:
                log.warning("shadow: %s", err)
                request = None
            if self._paused is not None and not self.station.inspecting:
                self.resume()  # an inspection that ended without its result going out (a bug, a PLC restart)
            run = self.run
            if request is not None and request["seq"] > self._seen_seq:
                self._seen_seq = request["seq"]
                by = str(request.get("by", ""))
                if request["action"] == "stop":
                    if run is not None:
                        await self._end(run, f"stopped by {by}")
                    return
                if run is not None:
                    await self._end(run, f"replaced by a new run asked for by {by}")
                await self._begin(str(request["version"]), int(request["parts"]), float(request["hours"]), by)
                return
            if run is not None:
                if run.hours and time.time() >= run.started_at + run.hours * 3600:
                    await self._end(run, f"{run.hours:g} hours passed")
                elif run.version == self.station.model_sha256:
                    await self._end(run, "its version is production now")
                return
            if self.settings.auto:
                await self._auto()

    async def _auto(self) -> None:
        try:
            version = (await asyncio.to_thread(self.models.find, self.settings.version)).id
        except ModelStoreError:
            return  # no candidate now: nothing to shadow
        if version == self.station.model_sha256:
            return
        if version in await asyncio.to_thread(shadow_log.shadowed_versions, self.station.store):
            return
        s = self.settings
        await self._begin(version, s.parts, s.hours, "config (model.shadow.auto)")

    async def _begin(self, version: str, parts: int, hours: float, by: str) -> None:
        now = time.time()
        run_id = await asyncio.to_thread(
            shadow_log.open_run, self.station.store, version, self.station.model_sha256, parts, hours, by,
            self._seen_seq, now,
        )  # fmt: skip
        await self._launch(Run(run_id, version, parts, hours, now, by, self._seen_seq))

    async def _launch(self, run: Run, resumed: bool = False) -> None:
        """The shadow process for ``run`` (its model loaded, off the loop), then its thread."""
        self.state = "starting"
        model = self.station.config.model
        try:
            path = await asyncio.to_thread(lambda: str(self.models.find(run.version).path))

            def start() -> ShadowProcess:
                process = ShadowProcess(
                    path, model.providers, model.backend, self.settings.threads, model.max_new_tokens
                )
                process.wait_ready()
                return process

            run.process = await asyncio.to_thread(start)
        except (ModelStoreError, ShadowProcessError, OSError) as err:
            why = f"not started: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            await asyncio.to_thread(shadow_log.end_run, self.station.store, run.id, why, time.time())
            self._note_end(run.id, run.version, why, time.time(), state="failed")
            self.station.raise_alarm("shadow_failed", f"shadow of {run.version[:12]}: {why}")
            return
        self.station.clear_alarm("shadow_failed")
        run.thread = threading.Thread(target=self._work, args=(run,), name="shadow", daemon=True)
        run.thread.start()
        self.run, self.state = run, "running"
        log.info("shadow run %d: %s judges live frames (%s)", run.id, run.version[:12], run.process.scheduling)
        self.station.events.publish(ShadowChanged("running", run.version, run.id, "resumed" if resumed else run.by))

    def _end_soon(self, run: Run, reason: str) -> None:
        if self.run is run and not run.ending:
            asyncio.get_running_loop().create_task(self._end(run, reason), name="shadow-end")

    def _failed_while_running(self, run: Run, why: str) -> None:
        self.station.raise_alarm("shadow_failed", f"shadow of {run.version[:12]}: {why}")
        self._end_soon(run, why)

    async def _end(self, run: Run, reason: str) -> None:
        if run.ending:
            return
        run.ending = True
        await self._shut(run)
        now = time.time()
        await asyncio.to_thread(shadow_log.end_run, self.station.store, run.id, reason, now, dict(run.counts))
        if self.run is run:
            self.run = None
        self._note_end(run.id, run.version, reason, now, counts={**run.counts, "unfamiliar": run.unfamiliar})
        log.info("shadow run %d of %s ended: %s", run.id, run.version[:12], reason)

    def _note_end(self, run_id: int, version: str, reason: str, at: float, state: str = "ended", counts=None) -> None:
        self.ended = {"run": run_id, "version": version[:12], "reason": reason, "at": at}
        if counts is not None:
            self.ended["counts"] = counts
        self.state = state
        self.station.events.publish(ShadowChanged(state, version, run_id, reason))

    async def _shut(self, run: Run) -> None:
        """The thread finishes the frame it judges and writes what it has; then the process ends."""
        run.ending = True
        if self._paused is run.process:
            self.resume()
        run.jobs.put(_STOP)
        if run.thread is not None:
            await asyncio.to_thread(run.thread.join, 60)
        if run.process is not None:
            await asyncio.to_thread(run.process.close)

    # -- what others read -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        run = self.run
        return {"shadow": {"state": self.state, **(run.status() if run is not None else {}), "last": self.ended}}
