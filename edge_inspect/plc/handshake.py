"""The PLC handshake as a transport-free state machine (docs/plc.md, "Handshake").

PLC waits for ``ready`` → writes trigger_id, recipe, part_id → raises ``trigger`` → appliance
drops ``ready``, raises ``busy`` → inspects → commits the log row → writes the result registers
→ raises ``results_valid``, drops ``busy`` → PLC raises ``results_ack`` → appliance drops
``results_valid``; ``ready`` returns once ``trigger`` and ``results_ack`` are both low.

``results_ack`` is taken as a rising edge after ``results_valid`` rose: an ack that was already
high when the results were published (held from before) does not complete the cycle; the PLC
must drop it and raise it again. In a normal cycle ack is low at trigger time (``ready`` only
returns once ack is low), so any high ack seen after ``results_valid`` rose counts.

A rising edge of ``trigger`` while not ready is a missed trigger: counted, never queued. It
latches ``error`` and error code 3 (unless a fault or the result's own error code takes the
register); the latch is published with the next result and clears when the PLC acknowledges that
result, so the PLC always gets to see it. While a fault is active (camera lost, disk full …) ``ready`` stays low and ``error`` is
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
    last_cycle_clean: bool = True  # no missed trigger was pending when the latest result was published
    _last_trigger: bool = False
    _pending: Request | None = None
    _last_beat: float | None = None
    _error_verdict: bool = False
    _result_code: ErrorCode = ErrorCode.NONE
    _last_ack: bool = False
    _ack_armed: bool = False  # results_ack was low when results_valid rose, or seen low since
    _missed_latched: bool = False
    _missed_published: bool = False

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
                self._missed_latched = True
        self._last_ack = inputs.results_ack
        if self.state == State.RESULTS:
            if not inputs.results_ack:
                self._ack_armed = True
            elif self._ack_armed:  # a rising edge of results_ack
                self.outputs["results_valid"] = False
                self.state = State.RELEASE
                if self._missed_published:
                    self._missed_latched = self._missed_published = False
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
            "cycle_ms": min(round((now - started) * 1000), 0xFFFF),
            "pass": result.verdict == Verdict.PASS, "fail": result.verdict == Verdict.FAIL,
        })  # fmt: skip
        self._error_verdict = result.verdict == Verdict.ERROR
        self._result_code = result.error_code
        self.last_cycle_clean = not self._missed_latched
        self._missed_published = self._missed_latched
        self._ack_armed = not self._last_ack
        self.outputs["results_valid"] = True
        self.state = State.RESULTS
        self._refresh()

    @property
    def missed_latched(self) -> bool:
        return self._missed_latched

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
        o["error"] = self._error_verdict or self.fault != ErrorCode.NONE or self._missed_latched
        if self.fault != ErrorCode.NONE:
            o["error_code"] = int(self.fault)
        elif self._result_code != ErrorCode.NONE:
            o["error_code"] = int(self._result_code)
        else:
            o["error_code"] = int(ErrorCode.MISSED_TRIGGER) if self._missed_latched else 0
        o["heartbeat"] = self.heartbeat
        o["inspection_count"] = self.inspection_count & 0xFFFFFFFF
        o["missed_triggers"] = self.missed_triggers & 0xFFFF
