"""One station: trigger → camera → inspector → store → PLC result signals → events.

The only module that knows the camera, the model, the store and the PLC together. Runs on one
asyncio loop; camera grabs, inference and log writes run in a worker thread so the Modbus link
keeps answering (and sees missed triggers) while an inspection is in flight.
"""

from __future__ import annotations

import asyncio
import itertools

import cv2
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import sdnotify
from .camera import Camera, CameraError, source_from_config
from .checks import defect_count, failed_mask
from .config import StationConfig
from .inspector import Inspection, Inspector
from .plc.handshake import Handshake, Request, Result
from .verdict import ErrorCode, Verdict
from .plc.modbus import LinkError, LinkSettings, make_link
from .plc.signals import build_map
from .store import InspectionRecord, Store, StoreError, draw_overlay
from .vlm import VisionLanguageModel, load_bundle

Event = dict


@dataclass
class Alarm:
    code: str  # camera_lost | plc_lost | disk_full | missed_trigger | model_error
    message: str
    since: float = field(default_factory=time.time)
    active: bool = True
    acknowledged: bool = False


class Station:
    def __init__(self, config: StationConfig, config_sha256: str, base_dir: Path,
                 model: VisionLanguageModel | None = None, on_event: Callable[[Event], None] | None = None):
        self.config, self.config_sha256 = config, config_sha256
        self.on_event = on_event or (lambda event: None)
        self.model = model or load_bundle(config.model.bundle, providers=config.model.providers,
                                          threads=config.model.threads, backend=config.model.backend)
        self.model_sha256 = self.model.sha256
        self.inspector = Inspector(self.model, config.model.max_new_tokens)
        cam = config.camera
        self.camera = Camera(source_from_config(cam, base_dir), cam.stall_timeout_s, cam.reconnect_min_s,
                             cam.reconnect_max_s, on_status=self._camera_status)
        s = config.storage
        data_dir = Path(s.dir) if Path(s.dir).is_absolute() else base_dir / s.dir
        self.store = Store(data_dir, s.save_pass_every, s.retention_days, s.max_disk_mb, s.min_free_mb)
        self.handshake = Handshake()
        self.signal_map = build_map({k: v.model_dump(exclude_none=True) for k, v in config.plc.map.items()})
        p = config.plc
        self.link = make_link(self.signal_map, LinkSettings(
            mode=p.mode, transport=p.transport, host=p.host, port=p.port, serial_port=p.serial_port or "",
            baudrate=p.baudrate, parity=p.parity, device_id=p.device_id)) if p.enabled else None  # fmt: skip
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inspect")
        self.alarms: dict[str, Alarm] = {}
        if self.model.fallback_reason and config.model.backend == "tensorrt":
            self.alarms["model_fallback"] = Alarm("model_fallback", f"TensorRT engines refused: {self.model.fallback_reason}")
        self.counters = {"total": 0, "PASS": 0, "FAIL": 0, "ERROR": 0, "missed_triggers": 0}
        self.plc_status = "off" if self.link is None else "starting"
        self.last_event: Event | None = None
        self.last_overlay_jpeg: bytes | None = None  # the latest frame with points drawn, for the HMI
        self.last_row_id: int | None = None
        self._busy = asyncio.Lock()
        self._ids = itertools.count(1)
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- status and alarms -----------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        self.last_event = event
        self.on_event(event)

    def raise_alarm(self, code: str, message: str) -> None:
        alarm = self.alarms.get(code)
        if alarm is None or not alarm.active:
            self.alarms[code] = Alarm(code, message)
            self._emit({"type": "alarm", "code": code, "message": message})
        else:
            alarm.message = message

    def acknowledge_alarm(self, code: str) -> bool:
        """An operator saw the alarm; it stays listed until it is both acknowledged and cleared."""
        alarm = self.alarms.get(code)
        if alarm is None:
            return False
        alarm.acknowledged = True
        self._emit({"type": "alarm_acknowledged", "code": code})
        return True

    def clear_alarm(self, code: str) -> None:
        alarm = self.alarms.get(code)
        if alarm and alarm.active:
            alarm.active = False
            self._emit({"type": "alarm_cleared", "code": code})

    def _alarm_active(self, code: str) -> bool:
        return code in self.alarms and self.alarms[code].active

    def _camera_status(self, status: str, detail: str) -> None:
        if status == "lost":
            self.raise_alarm("camera_lost", detail)
        elif status == "ok":
            self.clear_alarm("camera_lost")
        self._update_fault()

    def _update_fault(self) -> None:
        if self.camera.status == "lost":
            self.handshake.set_fault(ErrorCode.CAMERA)
        elif self._alarm_active("disk_full"):
            self.handshake.set_fault(ErrorCode.DISK_FULL)
        else:
            self.handshake.set_fault(ErrorCode.NONE)

    def status(self) -> dict:
        return {
            "station": self.config.station.name, "online": self.handshake.online,
            "ready": bool(self.handshake.outputs["ready"]), "busy": bool(self.handshake.outputs["busy"]),
            "camera": self.camera.status, "plc": self.plc_status, "model": self.model_sha256[:12],
            "counters": dict(self.counters), "disk": "full" if self._alarm_active("disk_full") else "ok",
            "alarms": [dict(a.__dict__) for a in self.alarms.values() if a.active or not a.acknowledged],
        }  # fmt: skip

    # -- inspecting ----------------------------------------------------------------------------------
    def _inspect_blocking(self, recipe_number: int, part_id: str, trigger: str, result_id: int,
                          started: float) -> tuple[InspectionRecord, ErrorCode]:
        """Grab, inspect, log. Runs in the worker thread. Never raises for camera/model/disk trouble."""
        recipe = self.config.recipe(recipe_number)
        timings: dict[str, float] = {}
        frame = None
        code = ErrorCode.NONE
        if recipe is None:
            inspection = Inspection(Verdict.ERROR, [], error=f"recipe {recipe_number} is not configured")
            code = ErrorCode.BAD_RECIPE
        else:
            t0 = time.perf_counter()
            try:
                frame = self.camera.grab()
                timings["grab_ms"] = (time.perf_counter() - t0) * 1000
                inspection = self.inspector.run(frame, recipe)
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
        )  # fmt: skip
        if frame is not None:
            ok, jpeg = cv2.imencode(".jpg", draw_overlay(frame, rec), [cv2.IMWRITE_JPEG_QUALITY, 85])
            self.last_overlay_jpeg = jpeg.tobytes() if ok else None
        self.last_row_id = None
        try:
            self.last_row_id = self.store.record(rec, frame)
            if self._alarm_active("disk_full"):
                self.clear_alarm("disk_full")
        except StoreError as err:
            self.raise_alarm("disk_full" if err.disk_full else "log_error", str(err))
            code = ErrorCode.DISK_FULL
        return rec, code

    async def inspect(self, recipe: int, part_id: str = "", trigger: str = "software", result_id: int | None = None,
                      started: float | None = None) -> tuple[InspectionRecord, ErrorCode]:
        """Run one inspection (one at a time) and report it as an event."""
        started = time.monotonic() if started is None else started
        result_id = next(self._ids) if result_id is None else result_id
        async with self._busy:
            loop = asyncio.get_running_loop()
            rec, code = await loop.run_in_executor(self.executor, self._inspect_blocking, recipe, part_id, trigger,
                                                   result_id, started)
        self._update_fault()
        self.counters["total"] += 1
        self.counters[rec.verdict.name] += 1
        self._emit({
            "type": "inspection", "id": self.last_row_id, "result_id": rec.result_id, "verdict": rec.verdict.name, "recipe": rec.recipe,
            "part_id": rec.part_id, "trigger": trigger, "error": rec.error, "error_code": int(code),
            "defect_count": defect_count(rec.outcomes), "failed_checks": failed_mask(rec.outcomes),
            "checks": [{"name": o.name, "kind": o.kind, "status": o.status, "reason": o.reason, "points": o.points}
                       for o in rec.outcomes],
            "timings_ms": {k: round(v, 1) for k, v in rec.timings_ms.items()},
        })  # fmt: skip
        return rec, code

    async def _serve(self, request: Request) -> None:
        try:
            rec, code = await self.inspect(request.recipe, request.part_id, "plc", request.trigger_id, request.at)
            result = Result(result_id=request.trigger_id, verdict=rec.verdict, defect_count=defect_count(rec.outcomes),
                            failed_checks=failed_mask(rec.outcomes), error_code=code)
        except Exception as err:  # a bug must not leave the PLC waiting on `busy` forever
            self.raise_alarm("internal", f"inspection failed: {type(err).__name__}: {err}")
            result = Result(result_id=request.trigger_id, verdict=Verdict.ERROR, error_code=ErrorCode.INTERNAL)
        self.handshake.complete(result, time.monotonic())
        await self._write_outputs()

    # -- loops -------------------------------------------------------------------------------------
    async def _write_outputs(self) -> None:
        if self.link is None:
            return
        try:
            await self.link.write_outputs({k: v for k, v in self.handshake.outputs.items()})
        except LinkError as err:
            self._plc_lost(str(err))

    def _plc_lost(self, message: str) -> None:
        if self.plc_status != "lost":
            self.plc_status = "lost"
        self.raise_alarm("plc_lost", message)

    async def _plc_loop(self) -> None:
        period = self.config.plc.poll_ms / 1000
        while not self._stopping:
            try:
                inputs = await self.link.read_inputs()
                if self.plc_status != "ok":
                    self.plc_status = "ok"
                    self.clear_alarm("plc_lost")
                missed = self.handshake.missed_triggers
                request = self.handshake.update(inputs, time.monotonic())
                if self.handshake.missed_triggers != missed:
                    self.counters["missed_triggers"] = self.handshake.missed_triggers
                    self.raise_alarm("missed_trigger", f"trigger while busy ({self.handshake.missed_triggers} so far)")
                await self._write_outputs()
                if request is not None:
                    self._spawn(self._serve(request), "serve")
            except LinkError as err:
                self._plc_lost(str(err))
                await asyncio.sleep(1.0)
            except Exception as err:  # keep polling: the PLC must keep seeing heartbeat and state
                self.raise_alarm("internal", f"PLC loop: {type(err).__name__}: {err}")
                await asyncio.sleep(1.0)
            await asyncio.sleep(period)

    async def _health_loop(self) -> None:
        next_retention = next_ping = 0.0
        ping_every = min(1.0, sdnotify.watchdog_interval_s() or 1.0)
        while not self._stopping:
            now = time.monotonic()
            idle_for = now - self.camera.last_frame_at
            if self.camera.can_fail and not self._busy.locked() and (self.camera.status == "lost" or idle_for >= 1.0):
                # An idle camera is checked every second, so a lost one drops `ready` before the next trigger.
                async with self._busy:
                    await asyncio.get_running_loop().run_in_executor(self.executor, self.camera.probe)
                self._update_fault()
                await self._write_outputs()
            if now >= next_retention:
                next_retention = now + 3600
                await asyncio.get_running_loop().run_in_executor(self.executor, self.store.enforce_retention)
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
        if self.link is not None:
            await self.link.start()
        self.handshake.set_online(True)
        await self._write_outputs()
        if self.link is not None and self.config.triggers.plc:
            self._spawn(self._plc_loop(), "plc")
        if self.config.triggers.interval_s > 0:
            self._spawn(self._interval_loop(), "interval")
        self._spawn(self._health_loop(), "health")
        sdnotify.notify("READY=1", f"STATUS=inspecting ({self.config.station.name})")
        self._emit({"type": "started", "station": self.config.station.name})

    async def stop(self) -> None:
        """Graceful stop: no new triggers, finish the inspection in flight, go offline."""
        sdnotify.notify("STOPPING=1")
        self._stopping = True
        self.handshake.set_online(False)
        for task in list(self._tasks):
            if task.get_name() != "serve":
                task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)  # a PLC request in flight completes
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown, True)
        await self._write_outputs()
        if self.link is not None:
            await self.link.stop()
        self.camera.close()
        self.store.close()
        self._emit({"type": "stopped"})
