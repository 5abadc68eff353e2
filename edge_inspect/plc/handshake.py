"""The PLC handshake as a transport-free state machine (docs/plc.md, "Handshake").

PLC waits for ``ready`` → writes trigger_id, recipe, part_id → raises ``trigger`` → appliance
drops ``ready``, raises ``busy`` → inspects → commits the log row → writes the result registers
→ raises ``results_valid``, drops ``busy`` → PLC raises ``results_ack`` → appliance drops
``results_valid``; ``ready`` returns once ``trigger`` and ``results_ack`` are both low.

``results_ack`` is taken as a rising edge after ``results_valid`` rose: an ack that was already
high when the results were published (held from before) does not complete the cycle; the PLC
must drop it and raise it again. In a normal cycle ack is low at trigger time (``ready`` only
returns once ack is low), so any high ack seen after ``results_valid`` rose counts.

Trigger edges: a link that sees every write (server mode) counts the rising edges itself
(``Inputs.trigger_edges``), so a 1→0→1 pulse between two polls is one edge. A link that samples
the PLC's memory (client mode) cannot see a low phase shorter than its poll: there a new
``trigger_id`` under a trigger that stayed high is the edge, once seen at two samples in a row
(``trigger`` and ``trigger_id`` are two reads: a PLC that drops ``trigger`` and writes the next id
between them shows as "high, new id" once, then low). An edge that is not accepted (busy,
results not acknowledged, offline, paused) is a missed trigger: counted in ``missed_triggers``,
never queued, and never written into a result: the result registers and the pass / fail / error
bits belong to the part that was inspected, so a missed trigger neither changes a result on
display nor marks the next one. While a fault is active (camera lost, disk full …) ``ready``
stays low and ``error`` is high; a trigger during a fault is answered at once with an ERROR
result, so the PLC never hangs.

A PLC restart (client mode: connection lost, or its memory found reset) voids what it asked for
before: ``restart()`` drops the request in flight, the result shown and the queue, and clears the
result area; the inspection in flight still completes and is logged, but ``complete()`` does not
show it to a PLC that never triggered it.

Result buffer (``result_buffer`` = depth 1..8, 0 = off): a trigger is accepted whenever no
inspection is running, even while a result waits for its ack; finished results queue behind the
one shown (up to ``depth``) and are shown one after another, each after the previous ack has
dropped. A result that finds the queue full is dropped for the PLC (it is still logged) and
raises ``results_overrun`` until the next ack.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from ..verdict import ErrorCode, Verdict
from .signals import MAX_DEFECT_POSITIONS

# The result area: what one result writes, and what a PLC restart clears.
RESULT_AREA: dict[str, int | bool] = {
    "result_id": 0, "verdict": 0, "defect_count": 0, "failed_checks": 0, "cycle_ms": 0, "pass": False, "fail": False,
    "defect_positions_valid": 0,
    **{f"defect_{i}_{axis}": 0 for i in range(1, MAX_DEFECT_POSITIONS + 1) for axis in ("x", "y")},
}  # fmt: skip


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
    recipe_change: bool = False
    trigger_edges: int | None = None  # rising edges since the last sample, where the link saw every write


@dataclass(frozen=True)
class Request:
    """An inspection the PLC asked for."""

    trigger_id: int
    recipe: int
    part_id: str
    at: float  # monotonic seconds of the trigger edge
    epoch: int = 0  # the handshake's restart count when it was accepted


@dataclass(frozen=True)
class Result:
    result_id: int
    verdict: Verdict
    defect_count: int = 0
    failed_checks: int = 0
    error_code: ErrorCode = ErrorCode.NONE
    warning: bool = False  # e.g. an uncertain answer resolved by policy
    positions_mm: tuple[tuple[float, float], ...] = ()  # the first defect points (plc.options.defect_positions)


@dataclass(frozen=True)
class _Shown:
    result: Result
    cycle_ms: int


@dataclass
class Handshake:
    result_buffer: int = 0  # queue depth behind the shown result; 0 = classic handshake
    online: bool = False
    fault: ErrorCode = ErrorCode.NONE
    warning: bool = False  # a station condition (degraded model backend, …), beside the result's own
    paused: bool = False  # a config change is being applied: `ready` low, triggers refused
    inspection_count: int = 0
    missed_triggers: int = 0
    heartbeat: int = 0
    outputs: dict[str, int | bool | str] = field(default_factory=dict)  # identity text signals hold str
    last_cycle_clean: bool = True  # no trigger was missed between the latest result's trigger and the result
    last_refusal: str = ""  # why the latest missed trigger was not accepted
    _last_trigger: bool = False
    _last_trigger_id: int | None = None
    _new_id: int | None = None  # a new trigger_id seen under a trigger that stayed high, to confirm
    _last_ack: bool = False
    _pending: Request | None = None
    _shown: _Shown | None = None  # results_valid high
    _latest: _Shown | None = None  # what the result registers hold
    _release: bool = False  # ack seen; waiting for it (and, without a buffer, trigger) to drop
    _ack_armed: bool = False  # results_ack was low when results_valid rose, or seen low since
    _queue: deque = field(default_factory=deque)
    _overrun: bool = False
    _last_beat: float | None = None
    _missed_since: bool = False  # a trigger was missed since the latest result
    _epoch: int = 0  # restarts so far: a request from before the latest one is void

    def __post_init__(self) -> None:
        self.outputs = {
            "online": False, "ready": False, "busy": False, "results_valid": False, "error": False, "error_code": 0,
            "heartbeat": 0, "inspection_count": 0, "missed_triggers": 0, "results_overrun": False,
            "results_queued": 0, "warning": False, **RESULT_AREA,
        }  # fmt: skip
        self._refresh()

    @property
    def state(self) -> State:
        if self._pending is not None:
            return State.BUSY
        if self._shown is not None:
            return State.RESULTS
        return State.RELEASE if self._release else State.READY

    # -- inputs ---------------------------------------------------------------------------------
    def set_online(self, online: bool) -> None:
        self.online = online
        self._refresh()

    def set_fault(self, code: ErrorCode) -> None:
        """An active fault (ErrorCode.NONE clears it). ``ready`` stays low while one is active."""
        self.fault = code
        self._refresh()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._refresh()

    def set_warning(self, warning: bool) -> None:
        self.warning = warning
        self._refresh()

    def _refusal(self) -> str:
        """Why a trigger edge now would not be accepted ("" = it would)."""
        if not self.online:
            return "offline"
        if self.paused:
            return "configuration being applied"
        if self._pending is not None:
            return "busy"
        if self.result_buffer == 0 and (self._shown is not None or self._release):
            return "results not acknowledged"
        return ""

    def _trigger_edges(self, inputs: Inputs) -> int:
        """Rising edges of ``trigger`` since the last sample (see the module's docstring)."""
        if inputs.trigger_edges is not None:  # the link saw every write
            return inputs.trigger_edges
        new_id, self._new_id = self._new_id, None
        if not inputs.trigger:
            return 0
        if not self._last_trigger:
            return 1
        # high at both samples: a new trigger_id means the PLC dropped and raised it in between,
        # if the next sample still shows it under a high trigger
        if new_id is not None and inputs.trigger_id == new_id:
            return 1
        if self._last_trigger_id is not None and inputs.trigger_id != self._last_trigger_id:
            self._new_id = inputs.trigger_id
        return 0

    def update(self, inputs: Inputs, now: float) -> Request | None:
        """Feed the PLC's latest inputs; returns a Request when an inspection must start."""
        self._beat(now)
        edges = self._trigger_edges(inputs)
        was_low = edges > 0 or not inputs.trigger  # trigger was low at some moment since the last sample
        self._last_trigger, self._last_trigger_id = inputs.trigger, inputs.trigger_id
        self._last_ack = inputs.results_ack
        if self._shown is not None:
            if not inputs.results_ack:
                self._ack_armed = True
            elif self._ack_armed:  # a rising edge of results_ack
                self._shown, self._release, self._overrun = None, True, False
        if self._release and not inputs.results_ack and (self.result_buffer > 0 or was_low):
            self._release = False
            if self._queue:
                self._show(self._queue.popleft())
        request = None
        for _ in range(edges):  # after the release: a re-trigger whose low phase fell between two samples counts
            refusal = "busy" if request is not None else self._refusal()
            if not refusal:
                request = self._pending = Request(inputs.trigger_id, inputs.recipe, inputs.part_id, now, self._epoch)
                self._missed_since = False  # a cycle is clean when nothing is missed from its trigger to its result
            else:
                self.missed_triggers += 1
                self.last_refusal = refusal
                self._missed_since = True
        self._refresh()
        return request

    def restart(self) -> None:
        """The PLC restarted: forget its requests and results, clear the result area (counters stay)."""
        self._pending = self._shown = self._latest = None
        self._epoch += 1
        self._queue.clear()
        self._release = self._overrun = self._ack_armed = False
        self._last_trigger = self._last_ack = False  # a trigger already high in the new memory is an edge
        self._last_trigger_id = self._new_id = None
        self.outputs.update(RESULT_AREA)
        self._refresh()

    def complete(self, result: Result, now: float, request: Request | None = None) -> bool:
        """Publish the result of the pending request (call after the log row is committed). Returns
        False, showing nothing, when ``request`` was accepted before the PLC restarted."""
        if request is not None and request.epoch != self._epoch:
            self.inspection_count += 1
            self._refresh()
            return False
        started = self._pending.at if self._pending else now
        self._pending = None
        self.inspection_count += 1
        self.last_cycle_clean = not self._missed_since
        self._missed_since = False
        entry = _Shown(result, min(round((now - started) * 1000), 0xFFFF))
        if self._shown is None and not self._release:
            self._show(entry)
        elif len(self._queue) < self.result_buffer:
            self._queue.append(entry)
        else:
            self._overrun = True  # logged, but the PLC will not see it
        self._refresh()
        return True

    def _show(self, entry: _Shown) -> None:
        self._shown = self._latest = entry
        self._ack_armed = not self._last_ack

    # -- outputs --------------------------------------------------------------------------------
    def _beat(self, now: float) -> None:
        if self._last_beat is None:
            self._last_beat = now
        while now - self._last_beat >= 1.0:
            self._last_beat += 1.0
            self.heartbeat = (self.heartbeat + 1) & 0xFFFF

    def _refresh(self) -> None:
        o = self.outputs
        latest = self._latest.result if self._latest else None
        if self._latest is not None:
            r = self._latest.result
            o.update({
                "result_id": r.result_id & 0xFFFF, "verdict": int(r.verdict), "defect_count": min(r.defect_count, 0xFFFF),
                "failed_checks": r.failed_checks & 0xFFFF, "cycle_ms": self._latest.cycle_ms,
                "pass": r.verdict == Verdict.PASS, "fail": r.verdict == Verdict.FAIL,
            })  # fmt: skip
            positions = r.positions_mm[:MAX_DEFECT_POSITIONS]
            o["defect_positions_valid"] = len(positions)
            for i in range(MAX_DEFECT_POSITIONS):  # 0.1 mm, clipped to the register's range; 0 when not valid
                x, y = positions[i] if i < len(positions) else (0.0, 0.0)
                o[f"defect_{i + 1}_x"] = min(max(round(x * 10), 0), 0xFFFF)
                o[f"defect_{i + 1}_y"] = min(max(round(y * 10), 0), 0xFFFF)
        queued = len(self._queue) + (self._shown is not None)
        room = (
            self._shown is None and not self._release
            if not self.result_buffer
            else len(self._queue) < self.result_buffer
        )
        o["online"] = self.online
        o["busy"] = self._pending is not None
        o["results_valid"] = self._shown is not None
        o["ready"] = self.online and not self.paused and self._pending is None and room and self.fault == ErrorCode.NONE
        error_verdict = latest is not None and latest.verdict == Verdict.ERROR
        o["error"] = error_verdict or self.fault != ErrorCode.NONE
        if self.fault != ErrorCode.NONE:
            o["error_code"] = int(self.fault)
        else:
            o["error_code"] = int(latest.error_code) if latest is not None else 0
        o["warning"] = self.warning or (latest is not None and latest.warning)
        o["results_queued"] = queued
        o["results_overrun"] = self._overrun
        o["heartbeat"] = self.heartbeat
        o["inspection_count"] = self.inspection_count & 0xFFFFFFFF
        o["missed_triggers"] = self.missed_triggers & 0xFFFF
