"""The OPC UA server: its own thread and event loop, bridged to the station's loop.

asyncua does its cryptography (RSA on every secure channel, AES on every message) and the
password check on its loop; on a thread of its own none of that delays the loop that serves the
PLC. The bridge:

- station events (published on the station's loop) are copied to the OPC UA loop, which
  updates the nodes and fires the events: a result is published here only after the station
  committed its log row (InspectionDone comes after the commit);
- StartSingleJob (the specification's, on AutomaticModeStateMachine) runs on the station's loop: refused (BadInvalidState, counted in
  RefusedTriggers) while an inspection runs or the PLC's handshake is busy, else the
  inspection starts and the call returns its JobId at once; the result follows as a
  ResultReadyEvent and in LastResult.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncua import ua

from .. import __version__
from ..plc.settings import StartError
from ..station.events import (
    AlarmAcknowledged,
    AlarmCleared,
    AlarmRaised,
    Event,
    InspectionDone,
    ModelChanged,
    Started,
    Stopped,
)
from . import model as m
from .channel import GuardedServer
from .methods import VisionMethods
from .results import ResultMemory, utc
from .security import METHOD_ROLES, RolePermissions, StationUsers, ensure_certificate

if TYPE_CHECKING:
    from ..station.ports import OpcUaPort

log = logging.getLogger(__name__)

POLICIES = {
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "None": ua.SecurityPolicyType.NoSecurity,
}
# Alarms that put the VisionSystemStateMachine in Error (inspections answer ERROR meanwhile).
ERROR_ALARMS = ("camera_lost", "model_error", "internal")
# How long a stop holds the server open for the subscriptions to send the Halted state.
HALT_HOLD_S = 1.0


class OpcUaServer(VisionMethods):
    """Started and stopped by the station; subscribes to its events from construction on."""

    def __init__(self, station: OpcUaPort, base_dir: Path, data_dir: Path):
        self.station, self.base_dir = station, base_dir
        if station.config.opcua is None:
            raise ValueError("OpcUaServer needs a station with an opcua section")  # daemon.py checks first
        self.config = station.config.opcua
        self.data_dir = data_dir
        users = self.config.users if self.config.users is not None else station.config.web.users
        self.users = StationUsers(users, self.config.anonymous)
        self.permissions = RolePermissions(self.users)
        self.refused_triggers = 0
        self.active_recipe = station.config.triggers.recipe
        self.prepared = False  # PrepareRecipe chose active_recipe (UnprepareRecipe returns to triggers.recipe)
        self.results = ResultMemory()
        self.config_loaded = datetime.now(timezone.utc)
        self.jobs = itertools.count(1)
        self._job: tuple[str, str] = ("", "")  # the OPC UA job whose inspection runs now: JobId, MeasId
        self._halted = False  # Halt called (jobs refused until Reset)
        self.server: GuardedServer | None = None
        self.model: m.VisionModel | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._station_loop: asyncio.AbstractEventLoop | None = None
        self._state = "Preoperational"
        self._watch_task: asyncio.Task | None = None
        station.events.subscribe(self._on_event)

    # -- lifecycle (called on the station's loop) ---------------------------------------------------
    async def start(self) -> None:
        self._station_loop = asyncio.get_running_loop()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="opcua", daemon=True)
        self._thread.start()
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._start(), self.loop))
        except Exception as err:
            await self._end_thread()
            if isinstance(err, OSError):
                host, port = self.config.host_port()
                raise StartError(f"OPC UA: cannot listen on {host}:{port}: {err.strerror or err}") from None
            raise
        log.info("OPC UA server on %s (%s)", self.config.endpoint, ", ".join(self.config.security))
        self._watch_task = asyncio.create_task(self._watch(), name="opcua-watch")

    async def _watch(self) -> None:
        """On the station's loop, 10 times a second: what has no event of its own (an inspection
        running, the PLC's missed triggers) is copied to the server when it changes."""
        shown = None
        while True:
            now = (*self._state_now(), self.station.inspecting, self._counters())
            if now != shown:
                shown = now
                self._submit(self._show_state(*now[:3]), self._show_counters(now[3]))
            await asyncio.sleep(0.1)

    def _counters(self) -> dict[str, int]:
        return {**self.station.counters, "refused_triggers": self.refused_triggers}

    async def stop(self) -> None:
        self._state = "Halted"
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        if self.loop is None:
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), self.loop))
        finally:
            await self._end_thread()

    async def _end_thread(self) -> None:
        loop, self.loop = self.loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        if thread is None or not thread.is_alive():
            loop.close()

    # -- on the OPC UA loop --------------------------------------------------------------------------
    async def _start(self) -> None:
        cfg, station = self.config, self.station
        server = GuardedServer(user_manager=self.users)
        await server.init()
        server.set_endpoint(cfg.endpoint)
        server.set_server_name(f"edge-inspect {station.config.station.name}")
        app_uri = f"urn:edge-inspect:{station.config.station.name}".replace(" ", "_")
        await server.set_application_uri(app_uri)
        await server.set_build_info(
            "urn:edge-inspect", "edge-inspect", "edge-inspect", __version__, __version__, datetime.now(timezone.utc)
        )
        if cfg.certificate and cfg.private_key:  # the config names both or neither
            cert, key = (
                Path(p) if Path(p).is_absolute() else self.base_dir / p for p in (cfg.certificate, cfg.private_key)
            )
        else:
            cert, key = await ensure_certificate(self.data_dir / "opcua", app_uri)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        if cfg.trusted_clients:
            from asyncua.crypto.truststore import TrustStore
            from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

            folder = Path(cfg.trusted_clients)
            store = TrustStore([folder if folder.is_absolute() else self.base_dir / folder], [])
            await store.load()
            server.set_certificate_validator(
                CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
                )
            )
        server.set_security_policy([POLICIES[p] for p in cfg.security], permission_ruleset=self.permissions)
        tokens = [ua.UserNameIdentityToken] + ([ua.AnonymousIdentityToken] if cfg.anonymous else [])
        server.set_identity_tokens(tokens)
        identity = {
            "Manufacturer": "edge-inspect",
            "ProductInstanceUri": app_uri,
            "StationName": station.config.station.name,
            "SoftwareRevision": __version__,
            "ModelId": station.model_sha256,
            "ConfigId": station.config_sha256,
        }
        self.model = await m.build(server, cfg.namespace, station.config, identity, self.handlers())
        for path, node in self.model.methods.items():
            self.permissions.method_roles[node.nodeid] = METHOD_ROLES[path.rsplit(".", 1)[-1]]
        await self.model.var("ConfigurationManagement.ActiveConfiguration").write_value(
            ua.Variant(self._configuration(station.config_sha256, None, None), ua.VariantType.ExtensionObject)
        )
        await server.start()
        self.server = server
        await self._show_state(self._state, "", False)

    async def _stop(self) -> None:
        """Halted first, and held until every subscription has sent it (at most HALT_HOLD_S), then close:
        a client sees the state machine halted before its session ends."""
        if self.server is not None:
            await self._show_state("Halted", "", False)
            await self._flush_subscriptions(HALT_HOLD_S)
            server, self.server = self.server, None
            await server.stop()

    async def _flush_subscriptions(self, limit_s: float) -> None:
        if self.server is None:
            return
        subs = self.server.iserver.subscription_service.subscriptions
        pending = lambda: [  # noqa: E731
            s
            for s in subs.values()
            if getattr(s, "_triggered_datachanges", None) or getattr(s, "_triggered_events", None)
        ]
        deadline = asyncio.get_running_loop().time() + limit_s
        while pending() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if pending():
            log.warning("OPC UA: %d subscription(s) did not fetch the Halted state in %.1f s", len(pending()), limit_s)

    async def _write(self, path: str, value: Any, vtype: ua.VariantType, array: bool = False) -> None:
        await self._space().var(path).write_value(m.variant(value, vtype, array))

    def _space(self) -> m.VisionModel:
        """The address space; the coroutines that use it run only once it is built (``_submit`` checks)."""
        if self.model is None:
            raise RuntimeError("the OPC UA address space is not built")
        return self.model

    async def _show_state(self, state: str, reason: str, busy: bool) -> None:
        """VisionStateMachine's CurrentState (and its Id: the state node), and inside Operational the
        AutomaticModeStateMachine's: Ready, or SingleExecution while an inspection runs."""
        sm, auto = "VisionStateMachine", "VisionStateMachine.AutomaticModeStateMachine"
        sub = ("SingleExecution" if busy else "Ready") if state == "Operational" else ""
        await self._write(f"{sm}.ErrorReason", reason, ua.VariantType.String)
        await self._write(f"{auto}.CurrentState", ua.LocalizedText(sub, "en"), ua.VariantType.LocalizedText)
        await self._write(
            f"{auto}.CurrentState.Id", self._space().auto_states.get(sub, ua.NodeId()), ua.VariantType.NodeId
        )
        await self._write(f"{sm}.CurrentState", ua.LocalizedText(state, "en"), ua.VariantType.LocalizedText)
        await self._write(f"{sm}.CurrentState.Id", self._space().states[state], ua.VariantType.NodeId)

    async def _show_now(self) -> None:
        await self._show_state(*self._state_now(), self.station.inspecting)

    async def _show_counters(self, counters: dict[str, int]) -> None:
        for name, key in m.COUNTERS:
            await self._write(f"Statistics.{name}", int(counters.get(key, 0)) & 0xFFFFFFFF, ua.VariantType.UInt32)

    async def _show_result(self, e: InspectionDone, counters: dict[str, int]) -> None:
        job_id, meas_id = self._job if e.trigger == "opcua" else ("", "")
        values: dict[str, Any] = {
            "ResultId": str(e.result_id), "JobId": job_id,
            "LogId": e.id if e.id is not None else -1, "PartId": e.part_id, "RecipeId": str(e.recipe),
            "Trigger": e.trigger, "Verdict": e.verdict, "ResultState": m.RESULT_STATES.get(e.verdict, 3),
            "ErrorCode": e.error_code, "Error": e.error, "DefectCount": e.defect_count,
            "FailedChecks": e.failed_checks, "CheckNames": [c.name for c in e.checks],
            "CheckOutcomes": [c.status for c in e.checks], "CheckReasons": [c.reason for c in e.checks],
            "CreationTime": utc(e.at),
            "ProcessingTimeMs": float(e.timings_ms.get("cycle_ms", 0.0)),
        }  # fmt: skip
        for name, vtype, array in m.RESULT_FIELDS:
            await self._write(f"ResultManagement.LastResult.{name}", values[name], vtype, array)
        await self._show_counters(counters)
        result = self.results.add(
            spec_result_id(e), job_id, meas_id, e.part_id, e.recipe, self.station.config_sha256,
            values["ResultState"], values["CreationTime"], values["ProcessingTimeMs"],
        )  # fmt: skip
        for gen in self._space().result_events:
            for name, _, _ in m.RESULT_FIELDS:
                if name not in m.EVENT_SPEC_FIELDS:
                    setattr(gen.event, name, values[name])
            for name in ("ResultId", "JobId", "PartId", "ResultState", "CreationTime", "IsPartial", "MeasId",
                         "InternalRecipeId", "ExternalRecipeId", "InternalConfigurationId", "ProcessingTimes"):  # fmt: skip
                setattr(gen.event, name, getattr(result, name))
            gen.event.Severity = 100 if e.verdict == "PASS" else 500
            await gen.trigger(message=f"result {result.ResultId.Id}: {e.verdict}")

    async def _show_alarm(self, code: str, state: str, message: str, user: str, active: list[str]) -> None:
        await self._write("ActiveAlarms", active, ua.VariantType.String, True)
        for gen in self._space().alarm_events:
            gen.event.AlarmCode, gen.event.AlarmState, gen.event.User = code, state, user
            gen.event.Severity = 700 if state == "raised" else 300
            await gen.trigger(message=message or f"{code} {state}")

    # -- station events (on the station's loop) --------------------------------------------------
    def _state_now(self) -> tuple[str, str]:
        st = self.station
        if self._state == "Halted" or self._halted:
            return "Halted", ""
        faults = [a for a in st.alarms.listed() if a["active"] and a["code"] in ERROR_ALARMS]
        if faults:
            return "Error", "; ".join(f"{a['code']}: {a['message']}" for a in faults)
        return self._state, ""

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Started):
            self._state = "Operational"
        elif isinstance(event, Stopped):
            self._state = "Halted"
        if self.loop is None:  # not started, or stopped
            return
        counters = self._counters()
        state, reason = self._state_now()
        coros = [self._show_state(state, reason, self.station.inspecting)]
        if isinstance(event, InspectionDone):
            coros.append(self._show_result(event, counters))
        elif isinstance(event, ModelChanged):  # a live swap (docs/model-lifecycle.md)
            coros.append(self._write("Identification.ModelId", event.version, ua.VariantType.String))
        elif isinstance(event, AlarmRaised | AlarmCleared | AlarmAcknowledged):
            active = [a["code"] for a in self.station.alarms.listed() if a["active"]]
            kind = {AlarmRaised: "raised", AlarmCleared: "cleared", AlarmAcknowledged: "acknowledged"}[type(event)]
            coros.append(
                self._show_alarm(event.code, kind, getattr(event, "message", ""), getattr(event, "user", ""), active)
            )
        self._submit(*coros)

    def _submit(self, *coros) -> None:
        async def run():
            for coro in coros:
                if self.server is None or self.model is None:
                    coro.close()  # not started yet, or stopped
                else:
                    await coro

        def done(f: Future) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("OPC UA: updating the address space failed: %r", f.exception())

        try:
            if self.loop is None:
                raise RuntimeError("the OPC UA loop is closed")
            asyncio.run_coroutine_threadsafe(run(), self.loop).add_done_callback(done)
        except RuntimeError:  # the OPC UA loop has just been closed
            for coro in coros:
                coro.close()

    # -- methods (called on the OPC UA loop; roles are checked before, security.RolePermissions) ------
    async def _on_station(self, coro):
        if self._station_loop is None:
            raise RuntimeError("the OPC UA server is not started")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._station_loop))

    def _refuse(self, why: str) -> None:
        self.refused_triggers += 1
        log.warning("OPC UA StartSingleJob refused: %s (%d so far)", why, self.refused_triggers)
        self._submit(self._show_counters(self._counters()))

    async def _begin_job(self, recipe: int, part_id: str, meas_id: str = "") -> str | None:
        """On the station's loop: start the job's inspection, or refuse it (None). The check and
        taking the station's inspection lock happen in one step of the job's task (no await between
        them), so a PLC trigger cannot slip in between; a PLC trigger the handshake has already
        accepted makes ``station.inspecting`` true."""
        st = self.station
        job_id = str(next(self.jobs))
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        async def job():
            state = self._state_now()[0]
            if state != "Operational" or st.status()["stopping"]:
                self._refuse("the station is stopping" if state == "Operational" else state.lower())
                accepted.set_result(None)
            elif st.inspecting:
                self._refuse("busy")
                accepted.set_result(None)
            else:
                self._job = (job_id, meas_id)
                accepted.set_result(job_id)
                try:
                    await st.inspect(recipe, part_id, trigger="opcua")  # takes the lock before its first await
                except Exception:  # the station raised its alarm; the client sees no result event
                    log.exception("OPC UA job %s failed", job_id)

        st.spawn_inspection(job())
        return await accepted


def spec_result_id(e: InspectionDone) -> str:
    """The specification's ResultId: the log row (unique; the station's result id is the PLC's
    trigger_id, which repeats), or the station's result id when the log could not be written."""
    return str(e.id) if e.id is not None else f"unlogged-{e.result_id}"
