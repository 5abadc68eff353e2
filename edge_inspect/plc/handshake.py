"""The PLC handshake as a transport-free state machine (DESIGN.md section 4).

PLC waits for ``ready`` → writes trigger_id, recipe, part_id → raises ``trigger`` → appliance
drops ``ready``, raises ``busy`` → inspects → commits the log row → writes the result registers
→ raises ``results_valid``, drops ``busy`` → PLC raises ``results_ack`` → appliance drops
``results_valid``; ``ready`` returns once ``trigger`` and ``results_ack`` are both low.

A rising edge of ``trigger`` while not ready is a missed trigger: counted and flagged, never
queued. While a fault is active (camera lost, disk full …) ``ready`` stays low and ``error`` is
high; a trigger during a fault is answered at once with an ERROR result, so the PLC never hangs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..verdict import ErrorCode, Verdict


class State(enum.Enum):
    READY = "ready"
    BUSY = "busy"
    RESULTS = "results"  # results_valid high, waiting for results_ack
    RELEASE = "release"  # ack seen; waiting for trigger and results_ack to drop


@dataclass(frozen=True)
class Inputs:
    trigger: bool = False
    results_ack: bool = False
    trigger_id: int = 0
    recipe: int = 0
    part_id: str = ""


@dataclass(frozen=True)
class Request:
    """An inspection the PLC asked for."""

    trigger_id: int
    recipe: int
    part_id: str
    at: float  # monotonic seconds of the trigger edge


@dataclass(frozen=True)
class Result:
    result_id: int
    verdict: Verdict
    defect_count: int = 0
    failed_checks: int = 0
    error_code: ErrorCode = ErrorCode.NONE


@dataclass
class Handshake:
    state: State = State.READY
    online: bool = False
    fault: ErrorCode = ErrorCode.NONE
    inspection_count: int = 0
    missed_triggers: int = 0
    heartbeat: int = 0
    outputs: dict[str, int | bool] = field(default_factory=dict)
    _last_trigger: bool = False
    _pending: Request | None = None
    _last_beat: float | None = None
    _error_verdict: bool = False

    def __post_init__(self) -> None:
        self.outputs = {
            "online": False, "ready": False, "busy": False, "results_valid": False, "pass": False, "fail": False,
            "error": False, "result_id": 0, "verdict": 0, "defect_count": 0, "failed_checks": 0, "error_code": 0,
            "heartbeat": 0, "inspection_count": 0, "cycle_ms": 0, "missed_triggers": 0,
        }  # fmt: skip
        self._refresh()

    # -- inputs ---------------------------------------------------------------------------------
    def set_online(self, online: bool) -> None:
        self.online = online
        self._refresh()

    def set_fault(self, code: ErrorCode) -> None:
        """An active fault (ErrorCode.NONE clears it). ``ready`` stays low while one is active."""
        self.fault = code
        if code != ErrorCode.NONE:
            self.outputs["error_code"] = int(code)
        self._refresh()

    def update(self, inputs: Inputs, now: float) -> Request | None:
        """Feed the PLC's latest inputs; returns a Request when an inspection must start."""
        self._beat(now)
        rising = inputs.trigger and not self._last_trigger
        self._last_trigger = inputs.trigger
        request = None
        if rising:
            if self.state == State.READY and self.online:
                request = Request(inputs.trigger_id, inputs.recipe, inputs.part_id, now)
                self._pending = request
                self.state = State.BUSY
                self.outputs["results_valid"] = False
            else:
                self.missed_triggers += 1
                self.outputs["error_code"] = int(ErrorCode.MISSED_TRIGGER)
        if self.state == State.RESULTS and inputs.results_ack:
            self.outputs["results_valid"] = False
            self.state = State.RELEASE
        if self.state == State.RELEASE and not inputs.trigger and not inputs.results_ack:
            self.state = State.READY
        self._refresh()
        return request

    def complete(self, result: Result, now: float) -> None:
        """Publish the result of the pending request (call after the log row is committed)."""
        started = self._pending.at if self._pending else now
        self._pending = None
        self.inspection_count += 1
        self.outputs.update({
            "result_id": result.result_id & 0xFFFF, "verdict": int(result.verdict),
            "defect_count": min(result.defect_count, 0xFFFF), "failed_checks": result.failed_checks & 0xFFFF,
            "error_code": int(result.error_code), "cycle_ms": min(round((now - started) * 1000), 0xFFFF),
            "pass": result.verdict == Verdict.PASS, "fail": result.verdict == Verdict.FAIL,
        })  # fmt: skip
        self._error_verdict = result.verdict == Verdict.ERROR
        self.outputs["results_valid"] = True
        self.state = State.RESULTS
        self._refresh()

    @property
    def pending(self) -> Request | None:
        return self._pending

    # -- outputs --------------------------------------------------------------------------------
    def _beat(self, now: float) -> None:
        if self._last_beat is None:
            self._last_beat = now
        while now - self._last_beat >= 1.0:
            self._last_beat += 1.0
            self.heartbeat = (self.heartbeat + 1) & 0xFFFF

    def _refresh(self) -> None:
        o = self.outputs
        o["online"] = self.online
        o["busy"] = self.state == State.BUSY
        o["ready"] = self.online and self.state == State.READY and self.fault == ErrorCode.NONE
        o["error"] = self._error_verdict or self.fault != ErrorCode.NONE
        o["heartbeat"] = self.heartbeat
        o["inspection_count"] = self.inspection_count & 0xFFFFFFFF
        o["missed_triggers"] = self.missed_triggers & 0xFFFF
