"""One station: trigger → camera → inspector → store → PLC result signals → events.

The only module that knows the camera, the model, the store and the PLC together. Runs on one
asyncio loop; camera grabs, inference and log writes run in a worker thread so the Modbus link
keeps answering (and sees missed triggers) while an inspection is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import cv2

from ..camera.calibration import CameraCalibration, Undistorter
from ..camera.sources import CameraError, make_camera
from ..config import CameraConfig, StationConfig
from ..inspection.checks import defect_count, failed_mask
from ..inspection.inspector import Inspection, Inspector
from ..inspection.overlay import draw_overlay
from ..logbook import InspectionRecord, Store, StoreError, alarm_history, config_versions, review
from ..plc.handshake import Handshake, Inputs, State
from ..plc.identity import identity_outputs
from ..plc.modbus import Link, StartError, make_link
from ..plc.recipe import RecipeSwitch
from ..verdict import ErrorCode, Verdict
from ..vlm import VisionLanguageModel
from ..vlm.platform_info import collect as collect_platform
from . import allocator, sdnotify
from .alarms import AlarmBoard
from .config_keeper import LIVE_KEYS, ConfigKeeper, changed_keys, live_part
from .events import (
    AlarmAcknowledged,
    AlarmCleared,
    AlarmRaised,
    CheckSummary,
    EventBus,
    InspectionDone,
    Started,
    Stopped,
)
from .plc_cycle import PlcCycle
from .review_sampling import DAY_S, ReviewSampler
from .unfamiliar import Guard

if TYPE_CHECKING:
    from .model_follower import ModelFollower
    from .shadow import Shadow

log = logging.getLogger(__name__)
A = TypeVar("A")


class Attachment(Protocol):
    """What the composition root (daemon.py) attaches to a station: the OPC UA server, the config keeper,
    fleet publishing. Started in the order attached, after the PLC link and before the camera; stopped in
    the reverse order after the station's Stopped event, before the log closes."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Station:
    """The station core. It knows the camera, the model, the log and the PLC link, and none of the
    adapters attached to it (OPC UA, fleet, web, config keeper): those see it through the narrow
    Protocols of station/ports.py."""

    def __init__(
        self,
        config: StationConfig,
        config_sha256: str,
        base_dir: Path,
        model: VisionLanguageModel | None = None,
        inspector: Inspector | None = None,
    ):
        self.config, self.config_sha256 = config, config_sha256
        self.events = EventBus()
        self.model = model or config.model.load()
        self.model_sha256 = self.model.sha256
        self.inspector = inspector or Inspector(self.model, config.model.max_new_tokens)
        self.sampler = ReviewSampler(config.review_sampling)
        self.camera = make_camera(config.camera, base_dir, on_status=self._camera_status)
        self.undistort: Undistorter | None = None  # a calibrated camera: frames undistorted, points also in mm
        if config.camera.calibration:
            path = Path(config.camera.calibration)
            self.undistort = Undistorter(CameraCalibration.load(path if path.is_absolute() else base_dir / path))
        s = config.storage
        self.data_dir = data_dir = Path(s.dir) if Path(s.dir).is_absolute() else base_dir / s.dir
        self.store = Store(data_dir, s.save_pass_every, s.retention_days, s.max_disk_mb, s.min_free_mb, s.pending_max)
        self.guard = Guard(config.unfamiliar, data_dir)  # the unfamiliar-frame guard (station/unfamiliar.py)
        handshake = Handshake(result_buffer=config.plc.options.result_buffer)
        self.signal_map = config.plc.signal_map()
        link = make_link(self.signal_map, config.plc.link_settings()) if config.plc.enabled else None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect")
        self.alarms = AlarmBoard()
        self.events.subscribe(self._remember_alarm)  # the alarm history in the log (docs/log.md)
        if self.model.fallback_reason and config.model.wants_tensorrt:
            self.alarms.raise_("model_fallback", f"TensorRT not used: {self.model.fallback_reason}")
        self.counters = {"total": 0, "PASS": 0, "FAIL": 0, "ERROR": 0, "missed_triggers": 0}
        options = config.plc.options
        recipe_switch = RecipeSwitch(config.triggers.recipe, lambda n: self.config.recipe(n) is not None) \
            if options.recipe_change else None  # fmt: skip
        self.plc = PlcCycle(self, handshake, link, recipe_switch, self.undistort)
        if options.identity:
            self.handshake.outputs.update(identity_outputs(self.model_sha256, config_sha256))
        self.handshake.set_warning(bool(self.model.fallback_reason))  # a degraded model backend
        # What the model runs on and why (providers, TensorRT, GPU, JetPack): read once, logged at start.
        self.platform = collect_platform(self.model, config.model.providers)
        self.last_overlay_jpeg: bytes | None = None  # the latest frame with points drawn, for the HMI
        self.last_result: tuple[float, float] | None = None  # (unix time, cycle ms) of the latest inspection
        self.last_row_id: int | None = None
        self._busy = asyncio.Lock()
        self._ids = itertools.count(1)
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._history_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-history")
        self._history_writes: list[asyncio.Future] = []
        self._attachments: list[Attachment] = []
        self._status_sections: list[Callable[[], dict]] = []
        # Set by the composition root for a station started from a file (config_keeper.py).
        self.keeper: ConfigKeeper | None = None
        # Set by the composition root where model.bundle names an alias of the model store.
        self.models: ModelFollower | None = None
        self.shadow: Shadow | None = None  # set by the composition root: a candidate judging after production
        # Alarms the previous run left open, closed in the log's history at this start (codes, unix time).
        self.alarms_closed_at_start: tuple[list[str], float] = ([], 0.0)

    # The PLC's side of the state, owned by the PLC cycle (station/plc_cycle.py).
    @property
    def handshake(self) -> Handshake:
        return self.plc.handshake

    @property
    def link(self) -> Link | None:
        return self.plc.link

    @property
    def recipe_switch(self) -> RecipeSwitch | None:
        return self.plc.recipe_switch

    @property
    def plc_status(self) -> str:
        return self.plc.status

    @property
    def last_inputs(self) -> Inputs | None:
        return self.plc.last_inputs

    @property
    def stopping(self) -> bool:
        return self._stopping

    def attach(self, attachment: Attachment, status: Callable[[], dict] | None = None) -> None:
        """Start and stop ``attachment`` with the station (see Attachment); ``status``: gives keys of status()."""
        self._attachments.append(attachment)
        if status is not None:
            self._status_sections.append(status)

    def attached(self, kind: type[A]) -> A | None:
        """The attachment of this type, if any (tests and diagnostics)."""
        return next((a for a in self._attachments if isinstance(a, kind)), None)

    def call_soon_threadsafe(self, fn: Callable[..., None], *args) -> None:
        """Run ``fn`` on the station's event loop, from any thread; dropped before start and after the loop closed."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    # -- status and alarms (changed on the event loop only) --------------------------------------
    def _on_loop(self, fn: Callable[..., None], *args) -> None:
        """Run ``fn`` on the station's event loop: now if called there, else soon (thread-safe)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def raise_alarm(self, code: str, message: str) -> None:
        if self.alarms.raise_(code, message):
            log.warning("alarm %s: %s", code, message)
            self.events.publish(AlarmRaised(code, message))

    def acknowledge_alarm(self, code: str, user: str = "") -> bool:
        """An operator saw the alarm; it stays listed until it is both acknowledged and cleared."""
        if not self.alarms.acknowledge(code, user):
            return False
        self.events.publish(AlarmAcknowledged(code, user))
        return True

    def clear_alarm(self, code: str) -> None:
        if self.alarms.clear(code):
            log.info("alarm %s cleared", code)
            self.events.publish(AlarmCleared(code))

    @property
    def inspecting(self) -> bool:
        """An inspection runs (or waits for its turn), or the PLC's handshake has accepted a trigger."""
        return self._busy.locked() or self.handshake.state == State.BUSY

    def spawn_inspection(self, coro) -> None:
        """Run ``coro`` (one that calls inspect) as a task of the station's: stop() lets it complete."""
        self._spawn(coro, "serve")

    def _remember_alarm(self, event) -> None:
        """Alarm events into the log's alarm history, written by a worker thread (never on the loop)."""
        if isinstance(event, AlarmRaised):
            write = functools.partial(alarm_history.raised, self.store, event.code, event.message)
        elif isinstance(event, AlarmCleared):
            write = functools.partial(alarm_history.cleared, self.store, event.code)
        elif isinstance(event, AlarmAcknowledged):
            write = functools.partial(alarm_history.acknowledged, self.store, event.code, event.user)
        else:
            return

        def run() -> None:
            try:
                write()
            except Exception:  # a full disk must not stop the alarms themselves
                log.warning("alarm history: could not record %s", event, exc_info=True)

        if self._loop is None:
            run()
        else:
            self._history_writes.append(self._loop.run_in_executor(self._history_executor, run))
            self._history_writes = [f for f in self._history_writes if not f.done()]

    def _camera_status(self, status: str, detail: str) -> None:
        """Called by the camera from its own threads; handled on the loop."""
        self._on_loop(self._camera_status_on_loop, status, detail)

    def _camera_status_on_loop(self, status: str, detail: str) -> None:
        if status == "lost":
            self.raise_alarm("camera_lost", detail)
        elif status == "ok":
            self.clear_alarm("camera_lost")
        self._update_fault()
        if self._loop is not None and not self._stopping:  # the PLC sees `ready` follow the camera at once
            self._spawn(self.plc.write_outputs(), "camera-status-outputs")

    def _update_fault(self) -> None:
        """Faults that stop inspections drop `ready` (a lost camera); disk trouble does not: the
        line keeps running, images go first, and the `warning` bit tells the PLC (docs/log.md)."""
        self.handshake.set_fault(ErrorCode.CAMERA if self.camera.status == "lost" else ErrorCode.NONE)
        self.handshake.set_warning(bool(self.model.fallback_reason) or self.store.low_space or self.store.pending > 0)

    def _update_disk_alarms(self, store_error: StoreError | None) -> None:
        if store_error is not None:
            self.raise_alarm("disk_full" if store_error.disk_full else "log_error", str(store_error))
        elif self.store.pending == 0:
            self.clear_alarm("disk_full")
            self.clear_alarm("log_error")
        if self.store.low_space:
            self.raise_alarm("disk_low", f"{self.store.folder}: disk almost full; images are not kept")
        else:
            self.clear_alarm("disk_low")

    def status(self) -> dict:
        """What the HMI and /api/status show. Every light tells the truth: ``plc`` is "off" when
        the PLC link is disabled, ``model_status`` "fallback" when TensorRT engines were refused."""
        last = self.last_result
        return {
            "station": self.config.station.name, "online": self.handshake.online,
            "ready": bool(self.handshake.outputs["ready"]), "busy": bool(self.handshake.outputs["busy"]),
            "camera": self.camera.status, "camera_counters": getattr(self.camera, "counters", dict)(),
            "plc": self.plc_status, "model": self.model_sha256[:12],
            "model_status": "fallback" if self.model.fallback_reason else "error" if self.alarms.active("model_error")
            else "ok",
            "counters": dict(self.counters), "review_sampling": self.sampler.status(time.time()),
            "unfamiliar": self.guard.status(),
            "disk": "full" if self.store.pending else "low" if self.store.low_space else "ok",
            "alarms": self.alarms.listed(),
            "recipe_active": self.recipe_switch.active if self.recipe_switch else self.config.triggers.recipe,
            "now": time.time(), "last_result_at": last[0] if last else None,
            "last_cycle_ms": last[1] if last else None, "stopping": self._stopping,
            "platform": self.platform.as_dict(), "config": self.config_sha256[:12], "config_on_disk": None, "restart_needed": [], "fleet": None,
            **{key: value for section in self._status_sections for key, value in section().items()},
        }  # fmt: skip

    def config_versions(self) -> list[dict]:
        """The kept versions of station.yaml, newest first (id, sha256, ts_unix, author, source,
        comment); blocking (SQLite): call it from a worker thread."""
        return config_versions.history(self.store)

    def _close_left_open_alarms(self, at: float) -> None:
        try:
            codes = alarm_history.close_left_open(self.store, at)
        except Exception:  # a full disk must not stop the start
            log.warning("alarm history: could not close the alarms left open", exc_info=True)
            return
        if codes:
            log.info("alarms left open by the previous run closed at start: %s", ", ".join(codes))
            self.alarms_closed_at_start = (codes, at)

    # -- inspecting ----------------------------------------------------------------------------------
    def grab_frame(self, trigger_at: float | None = None):
        """A frame from the camera, undistorted when the camera is calibrated (worker thread only).
        ``trigger_at``: when the trigger was seen (monotonic), for a camera triggered on its own line."""
        frame = self.camera.grab(trigger_at)
        return self.undistort(frame) if self.undistort is not None else frame

    async def between_inspections(self, fn: Callable, *args):
        """Run ``fn`` in the inspection thread while no inspection runs (setup: live view, try)."""
        async with self._busy:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _inspect_blocking(
        self, recipe_number: int, part_id: str, trigger: str, result_id: int, started: float
    ) -> tuple[InspectionRecord, ErrorCode, StoreError | None]:
        """Grab, inspect, log. Runs in the worker thread. Never raises for camera/model/disk trouble;
        a log that could not be written comes back as the third value (alarms are raised on the loop)."""
        recipe = self.config.recipe(recipe_number)
        timings: dict[str, float] = {}
        frame = None
        frame_id = camera_ts_ns = None
        judged = None
        code = ErrorCode.NONE
        if recipe is None:
            inspection = Inspection(Verdict.ERROR, [], error=f"recipe {recipe_number} is not configured")
            code = ErrorCode.BAD_RECIPE
        else:
            t0 = time.perf_counter()
            try:
                frame = self.grab_frame(started)
                timings["grab_ms"] = (time.perf_counter() - t0) * 1000
                taken = getattr(self.camera, "last_frame", None)  # GenICam: id and timestamp; synthetic: the seed
                if taken is not None:
                    frame_id, camera_ts_ns = taken.frame_id, taken.camera_ts_ns
                inspection = self.inspector.run(frame, recipe)
                inspection, judged = self.guard.judge(recipe, inspection, self.model_sha256, self.config.recipes)
                if inspection.verdict == Verdict.ERROR:
                    code = ErrorCode.MODEL
            except CameraError as err:
                inspection = Inspection(Verdict.ERROR, [], error=f"camera: {err}")
                code = ErrorCode.CAMERA
            timings.update(inspection.timings_ms)
        timings["cycle_ms"] = (time.monotonic() - started) * 1000
        rec = InspectionRecord(
            result_id=result_id, station=self.config.station.name, recipe=recipe_number,
            recipe_name=recipe.name if recipe else "", part_id=part_id, trigger=trigger, verdict=inspection.verdict,
            error=inspection.error, outcomes=inspection.outcomes, timings_ms=timings,
            model_sha256=self.model_sha256, config_sha256=self.config_sha256,
            rois=[c.roi for c in recipe.checks] if recipe else [],
            mm_per_px=self.undistort.calibration.mm_per_px if self.undistort else None,
            frame_size=(frame.shape[1], frame.shape[0]) if frame is not None else None,
            recipe_sha256=recipe.sha256() if recipe else "", frame_id=frame_id, camera_ts_ns=camera_ts_ns,
            review_reason=self.sampler.choose(recipe, inspection.verdict, inspection.outcomes, time.time(), judged),
            unfamiliar_score=judged.score if judged else None, unfamiliar_threshold=judged.threshold if judged else None,
        )  # fmt: skip
        self.last_overlay_jpeg = None  # never an old frame under a new verdict
        if frame is not None:
            # no legend strip: the HMI's check list beside the picture is its legend
            overlay = draw_overlay(frame, rec.outcomes, rec.verdict, rec.rois, legend=False)
            ok, jpeg = cv2.imencode(".jpg", overlay, [cv2.IMWRITE_JPEG_QUALITY, 85])
            self.last_overlay_jpeg = jpeg.tobytes() if ok else None
        self.last_row_id = None
        store_error = None
        try:
            self.last_row_id = self.store.record(rec, frame)
        except StoreError as err:
            store_error = err
            code = ErrorCode.DISK_FULL
        if self.shadow is not None:  # the frame, for after the result is out (result_out)
            self.shadow.hold(rec, frame, self.last_row_id)
        return rec, code, store_error

    async def inspect(
        self,
        recipe: int,
        part_id: str = "",
        trigger: str = "software",
        result_id: int | None = None,
        started: float | None = None,
    ) -> tuple[InspectionRecord, ErrorCode]:
        """Run one inspection (one at a time) and report it as an event."""
        started = time.monotonic() if started is None else started
        result_id = next(self._ids) if result_id is None else result_id
        if self.shadow is not None:  # frozen until this result is out (result_out)
            self.shadow.pause()
        async with self._busy:
            loop = asyncio.get_running_loop()
            rec, code, store_error = await loop.run_in_executor(
                self.executor, self._inspect_blocking, recipe, part_id, trigger, result_id, started
            )
        self._update_disk_alarms(store_error)
        if code == ErrorCode.MODEL and not rec.unfamiliar:
            self.raise_alarm("model_error", rec.error or "the model gave no usable answer")
        elif code in (ErrorCode.NONE, ErrorCode.DISK_FULL):
            self.clear_alarm("model_error")
        unfamiliar = self.guard.alarm()
        self.raise_alarm("unfamiliar_images", unfamiliar) if unfamiliar else self.clear_alarm("unfamiliar_images")
        self._update_fault()
        self.counters["total"] += 1
        self.counters[rec.verdict.name] += 1
        self.last_result = (time.time(), round(rec.timings_ms.get("cycle_ms", 0.0), 1))
        self.events.publish(InspectionDone(
            id=self.last_row_id, result_id=rec.result_id, verdict=rec.verdict.name, recipe=rec.recipe,
            part_id=rec.part_id, trigger=trigger, error=rec.error, error_code=int(code),
            defect_count=defect_count(rec.outcomes), failed_checks=failed_mask(rec.outcomes),
            checks=[CheckSummary(o.name, o.kind, o.status, o.reason, list(o.points)) for o in rec.outcomes],
            timings_ms={k: round(v, 2) for k, v in rec.timings_ms.items()},  # as the log keeps them
            at=self.last_result[0], frame=self.last_overlay_jpeg is not None, unfamiliar=rec.unfamiliar,
        ))  # fmt: skip
        if trigger != "plc":  # the PLC's cycle calls result_out once `results_valid` is written
            self.result_out(rec.result_id)
        return rec, code

    def result_out(self, result_id: int) -> None:
        """Production's result for ``result_id`` is out (the PLC has it): the shadow may judge its frame."""
        if self.shadow is not None:
            self.shadow.release(result_id)

    async def check_camera(self, new: CameraConfig) -> None:
        """New GenICam settings for the camera the station runs, checked against its feature tree
        without writing (FeatureError): the setup page's save. Nothing to check for other sources,
        another camera, or a camera not connected now (the start checks them)."""
        check = getattr(self.camera, "check_settings", None)
        if new.source == "genicam" and check is not None:
            await asyncio.get_running_loop().run_in_executor(None, check, new.genicam)

    @contextlib.asynccontextmanager
    async def _paused(self) -> AsyncIterator[None]:
        """Between inspections, with `ready` low (the PLC sees it) until the block is done."""
        async with self._busy:
            self.handshake.set_paused(True)
            await self.plc.write_outputs()
            try:
                yield
            finally:
                self.handshake.set_paused(False)
                await self.plc.write_outputs()

    async def apply_config(self, new: StationConfig, sha256: str) -> tuple[list[str], list[str]]:
        """Take over the parts of ``new`` a running station can (LIVE_KEYS), between inspections, with
        `ready` low while it happens. Returns (keys applied, keys that wait for a restart): the other
        sections of the running config are still the ones it started with."""
        changed = changed_keys(self.config, new)
        applied = [k for k in changed if k in LIVE_KEYS]
        async with self._paused():
            self.config = live_part(self.config, new)
            self.config_sha256 = sha256
            if self.config.plc.options.identity:
                self.handshake.outputs.update(identity_outputs(self.model_sha256, sha256))
            if self.recipe_switch is not None and self.config.recipe(self.recipe_switch.active) is None:
                self.recipe_switch.active = self.config.triggers.recipe
        return applied, [k for k in changed if k not in LIVE_KEYS]

    async def swap_model(self, model: VisionLanguageModel) -> str:
        """Judge the next parts with ``model`` (loaded beforehand, off the loop): between inspections,
        with `ready` low only for the swap, as apply_config. Returns the version it replaced."""
        async with self._paused():
            previous = self.model_sha256
            self.model, self.model_sha256 = model, model.sha256
            # the running config names the folder it runs (a config saved now compares against it)
            self.config = self.config.model_copy(
                update={"model": self.config.model.model_copy(update={"bundle": str(model.bundle.path)})}
            )
            self.inspector = Inspector(model, self.config.model.max_new_tokens)
            self.platform = collect_platform(model, self.config.model.providers)
            if self.config.plc.options.identity:
                self.handshake.outputs.update(identity_outputs(self.model_sha256, self.config_sha256))
            self._update_fault()
        return previous

    # -- loops -------------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        next_retention = next_ping = next_flush = 0.0
        next_trim = time.monotonic() + allocator.TRIM_EVERY_S
        ping_every = min(1.0, sdnotify.watchdog_interval_s() or 1.0)
        while not self._stopping:
            now = time.monotonic()
            idle_for = now - self.camera.last_frame_at
            if self.camera.can_fail and not self._busy.locked() and (self.camera.status == "lost" or idle_for >= 1.0):
                # An idle camera is checked every second, so a lost one drops `ready` before the next trigger.
                async with self._busy:
                    await asyncio.get_running_loop().run_in_executor(self.executor, self.camera.probe)
                self._update_fault()
                await self.plc.write_outputs()
            if self.store.pending and now >= next_flush and not self._busy.locked():
                next_flush = now + 2.0  # results kept in memory while the log could not be written
                store_error = None
                try:
                    await asyncio.get_running_loop().run_in_executor(self.executor, self.store.flush_pending)
                except StoreError as err:
                    store_error = err
                self._update_disk_alarms(store_error)
                self._update_fault()
                await self.plc.write_outputs()
            if now >= next_retention:
                next_retention = now + 3600
                await asyncio.get_running_loop().run_in_executor(self.executor, self.store.enforce_retention)
            if now >= next_trim:  # off the loop and off the inspection's thread
                next_trim = now + allocator.TRIM_EVERY_S
                asyncio.get_running_loop().run_in_executor(self._history_executor, allocator.trim)
            if now >= next_ping:
                next_ping = now + ping_every
                sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(0.25)

    async def _interval_loop(self) -> None:
        period = self.config.triggers.interval_s
        while not self._stopping:
            started = time.monotonic()
            await self.inspect(self.config.triggers.recipe, trigger="interval")
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    # -- lifecycle ---------------------------------------------------------------------------------
    def _spawn(self, coro, name: str) -> None:
        """A task the station owns; finished ones are dropped, so a long run does not pile them up."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # Alarms the previous run left open are over (this run raises again what still holds), before any new one.
        await self._loop.run_in_executor(self._history_executor, self._close_left_open_alarms, time.time())
        # Review sampling's caps count what the log holds (a restart does not reset them), read off the loop.
        taken = await self._loop.run_in_executor(
            self._history_executor, review.sampled_times, self.store, time.time() - DAY_S
        )
        self.sampler.seed(taken)
        await self._loop.run_in_executor(
            self._history_executor, self.guard.load, self.model_sha256, self.config.recipes
        )
        if self.link is not None:
            try:
                await self.link.start()
            except StartError:  # port in use, serial device missing or busy: the caller reports it
                self.camera.close()
                self.store.close()
                raise
        started: list[Attachment] = []
        try:
            for attachment in self._attachments:
                await attachment.start()
                started.append(attachment)
            # a live camera's grabber starts streaming now; a GenICam camera is opened and configured
            await self._loop.run_in_executor(None, self.camera.start)
        except Exception:  # port in use, unreadable certificate, a feature the camera refuses (UserError: exit 2)
            for attachment in reversed(started):
                await attachment.stop()
            if self.link is not None:
                await self.link.stop(hold_s=0)
            self.camera.close()
            self.store.close()
            raise
        self.handshake.set_online(True)
        if self.link is not None:
            self.plc.check_health()  # client mode with the PLC unreachable: online / ready stay low, retrying
        await self.plc.write_outputs()
        if self.link is not None and self.config.triggers.plc:
            self._spawn(self.plc.run(), "plc")
        if self.config.triggers.interval_s > 0:
            self._spawn(self._interval_loop(), "interval")
        self._spawn(self._health_loop(), "health")
        sdnotify.notify("READY=1", f"STATUS=inspecting ({self.config.station.name})")
        self.events.publish(Started(self.config.station.name))

    async def stop(self) -> None:
        """Graceful stop: no new triggers, finish the inspection in flight, go offline."""
        sdnotify.notify("STOPPING=1")
        self._stopping = True
        self.handshake.set_online(False)
        await self.plc.write_outputs()  # the PLC sees online = 0 / ready = 0 at once
        for task in list(self._tasks):
            if task.get_name() != "serve":
                task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)  # a PLC request in flight completes
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)
        await self.plc.write_outputs()
        if self.link is not None:  # server: held until the PLC has read online = 0 (bounded)
            await self.link.stop(hold_s=self.link.settings.stop_hold_s)
        self.camera.close()
        await asyncio.gather(*self._history_writes, return_exceptions=True)
        self._history_executor.shutdown(wait=True)
        self.events.publish(Stopped())
        for attachment in reversed(self._attachments):  # after Stopped: OPC UA clients see the state machine halted
            await attachment.stop()
        self.store.close()
