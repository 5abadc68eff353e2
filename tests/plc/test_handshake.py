"""The handshake state machine, without any transport."""

from edge_inspect.plc.handshake import Handshake, Inputs, Result, State
from edge_inspect.verdict import ErrorCode, Verdict


def _online() -> Handshake:
    h = Handshake()
    h.set_online(True)
    return h


def test_full_cycle():
    h = _online()
    assert h.outputs["ready"] and not h.outputs["busy"]
    assert h.update(Inputs(trigger_id=7, recipe=2, part_id="A1"), 0.0) is None
    req = h.update(Inputs(trigger=True, trigger_id=7, recipe=2, part_id="A1"), 0.1)
    assert (req.trigger_id, req.recipe, req.part_id) == (7, 2, "A1")
    assert h.outputs["busy"] and not h.outputs["ready"] and not h.outputs["results_valid"]
    h.complete(Result(7, Verdict.FAIL, defect_count=2, failed_checks=0b101), 0.35)
    o = h.outputs
    assert o["results_valid"] and not o["busy"] and not o["ready"]
    assert (o["result_id"], o["verdict"], o["defect_count"], o["failed_checks"]) == (7, 2, 2, 5)
    assert o["fail"] and not o["pass"] and not o["error"] and o["cycle_ms"] == 250 and o["inspection_count"] == 1
    h.update(Inputs(trigger=True, results_ack=True), 0.4)
    assert not h.outputs["results_valid"] and not h.outputs["ready"]  # trigger still high
    h.update(Inputs(trigger=False, results_ack=True), 0.45)
    assert not h.outputs["ready"]  # ack still high
    h.update(Inputs(), 0.5)
    assert h.outputs["ready"] and h.state == State.READY


RESULT = ("results_valid", "result_id", "verdict", "defect_count", "failed_checks", "cycle_ms", "pass", "fail")
SHOWN = RESULT + ("error", "error_code")


def _shown(h: Handshake) -> dict:
    return {n: h.outputs[n] for n in SHOWN}


def test_trigger_while_busy_is_missed_not_queued():
    h = _online()
    assert h.update(Inputs(trigger=True, trigger_id=1), 0.0) is not None
    assert h.update(Inputs(trigger=False), 0.1) is None
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.2) is None  # second edge while busy
    assert h.missed_triggers == 1 and h.outputs["missed_triggers"] == 1 and h.last_refusal == "busy"
    assert h.outputs["error_code"] == 0 and not h.outputs["error"]  # on the status, not on a result
    h.complete(Result(1, Verdict.PASS), 0.3)
    # the result of the request in flight is the part's own: no error, no code 3
    assert h.outputs["result_id"] == 1 and h.outputs["pass"] and h.outputs["verdict"] == 1
    assert h.outputs["error_code"] == 0 and not h.outputs["error"] and not h.last_cycle_clean
    h.update(Inputs(results_ack=True), 0.4)
    h.update(Inputs(), 0.5)
    assert h.update(Inputs(trigger=False), 0.6) is None  # nothing was queued
    h.update(Inputs(trigger=True, trigger_id=2), 0.7)
    h.complete(Result(2, Verdict.FAIL), 0.8)
    assert h.last_cycle_clean and h.outputs["error_code"] == 0 and not h.outputs["error"]
    assert h.missed_triggers == 1


def test_missed_trigger_never_changes_a_presented_result_nor_marks_the_next():
    h = _online()
    h.update(Inputs(trigger=True, trigger_id=1), 0.0)
    h.complete(Result(1, Verdict.FAIL, defect_count=2, failed_checks=1), 0.1)
    shown = _shown(h)
    h.update(Inputs(trigger=False), 0.2)
    h.update(Inputs(trigger=True, trigger_id=9), 0.3)  # a trigger before the result was acknowledged
    assert h.missed_triggers == 1 and h.outputs["missed_triggers"] == 1
    assert h.last_refusal == "results not acknowledged"
    assert _shown(h) == shown  # the result on display is untouched
    h.update(Inputs(trigger=True, trigger_id=9), 0.35)  # still high: the same missed trigger, counted once
    assert h.missed_triggers == 1 and _shown(h) == shown
    h.update(Inputs(results_ack=True), 0.4)
    assert {**_shown(h), "results_valid": True} == shown  # released, registers unchanged
    h.update(Inputs(), 0.5)
    assert h.outputs["ready"]
    h.update(Inputs(trigger=True, trigger_id=2), 0.6)
    h.complete(Result(2, Verdict.PASS), 0.7)
    assert h.outputs["error_code"] == 0 and not h.outputs["error"] and h.outputs["pass"]  # not marked
    # the miss came before this cycle's trigger: nothing was missed from its trigger to its result, so
    # the cycle is clean and the missed_trigger alarm clears with it
    assert h.last_cycle_clean and h.missed_triggers == 1


def _held_after_ack(h: Handshake, trigger_id: int) -> None:
    """A cycle whose trigger the PLC keeps high after the ack: RELEASE, ready low."""
    assert h.update(Inputs(trigger=True, trigger_id=trigger_id), 0.0) is not None
    h.complete(Result(trigger_id, Verdict.PASS), 0.1)
    h.update(Inputs(trigger=True, results_ack=True, trigger_id=trigger_id), 0.2)
    h.update(Inputs(trigger=True, trigger_id=trigger_id), 0.3)
    assert h.state == State.RELEASE and not h.outputs["ready"]


def test_counted_edges_make_a_retrigger_between_two_samples_an_inspection():
    """Server mode: the link counts every rising edge written, so a 1→0→1 the samples never saw low
    is one edge; the appliance was idle in between, so it is inspected."""
    h = _online()
    _held_after_ack(h, 1)
    req = h.update(Inputs(trigger=True, trigger_id=2, trigger_edges=1), 0.4)
    assert req is not None and req.trigger_id == 2 and h.missed_triggers == 0
    h.update(Inputs(trigger=True, trigger_id=2, trigger_edges=2), 0.5)  # two more while busy: both missed
    assert h.missed_triggers == 2
    h.complete(Result(2, Verdict.PASS), 0.6)
    assert h.update(Inputs(trigger=False, trigger_edges=0), 0.7) is None
    # a whole pulse between two samples (0→1→0): edge counted, level already low
    h.update(Inputs(results_ack=True, trigger_edges=0), 0.8)
    h.update(Inputs(trigger_edges=0), 0.9)
    req = h.update(Inputs(trigger=False, trigger_id=3, trigger_edges=1), 1.0)
    assert req is not None and req.trigger_id == 3


def test_a_new_trigger_id_under_a_trigger_that_stayed_high_is_an_edge():
    """Client mode samples levels: a low phase shorter than the poll shows as a new trigger_id,
    taken once two samples in a row show it under a high trigger."""
    h = _online()
    _held_after_ack(h, 1)
    assert h.update(Inputs(trigger=True, trigger_id=1), 0.4) is None and h.missed_triggers == 0  # held: no edge
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.5) is None  # to be confirmed
    req = h.update(Inputs(trigger=True, trigger_id=2), 0.52)
    assert req is not None and req.trigger_id == 2
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.54) is None  # the same trigger
    h.update(Inputs(trigger=True, trigger_id=3), 0.6)
    h.update(Inputs(trigger=True, trigger_id=3), 0.62)  # another while busy: missed
    assert h.missed_triggers == 1 and h.last_refusal == "busy"


def test_a_torn_read_is_no_trigger():
    """trigger read high, then the PLC drops it and writes the next trigger_id before that is read:
    one sample shows "high, new id", the next one low. No trigger until it rises."""
    h = _online()
    _held_after_ack(h, 1)
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.4) is None
    assert h.update(Inputs(trigger=False, trigger_id=2), 0.42) is None
    assert h.missed_triggers == 0 and h.state == State.READY
    req = h.update(Inputs(trigger=True, trigger_id=2), 0.44)  # the PLC raises it: one trigger
    assert req is not None and req.trigger_id == 2
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.46) is None and h.missed_triggers == 0


def test_restart_voids_what_the_plc_asked_before():
    h = _online()
    h.update(Inputs(trigger=True, trigger_id=1), 0.0)
    h.complete(Result(1, Verdict.FAIL, defect_count=3, failed_checks=4, error_code=ErrorCode.MODEL), 0.1)
    assert h.outputs["results_valid"] and not h.outputs["ready"]
    h.restart()  # waiting for an ack that the restarted PLC will never give
    o = h.outputs
    assert o["ready"] and not o["results_valid"] and h.state == State.READY
    assert all(o[n] in (0, False) for n in SHOWN) and o["inspection_count"] == 1
    request = h.update(Inputs(trigger=True, trigger_id=2), 0.2)  # busy when the PLC restarts
    assert request is not None
    h.restart()
    assert h.update(Inputs(trigger=True, trigger_id=7), 0.3) is not None  # high in the new memory: an edge
    assert not h.complete(Result(2, Verdict.PASS), 0.4, request)  # the old request's result: not shown
    assert h.outputs["busy"] and not h.outputs["results_valid"] and h.outputs["result_id"] == 0


def test_results_ack_is_a_rising_edge():
    """An ack held high from before does not complete the next cycle."""
    h = _online()
    h.update(Inputs(results_ack=True), 0.0)  # PLC left results_ack high
    assert h.update(Inputs(trigger=True, results_ack=True, trigger_id=5), 0.1) is not None
    h.complete(Result(5, Verdict.FAIL), 0.2)
    for t in (0.3, 0.4, 0.5):
        h.update(Inputs(trigger=True, results_ack=True), t)
        assert h.outputs["results_valid"] and h.state == State.RESULTS
    h.update(Inputs(trigger=True, results_ack=False), 0.6)
    assert h.outputs["results_valid"]
    h.update(Inputs(trigger=True, results_ack=True), 0.7)  # the edge
    assert not h.outputs["results_valid"] and h.state == State.RELEASE


def test_no_request_while_offline():
    h = Handshake()
    assert h.update(Inputs(trigger=True), 0.0) is None
    assert not h.outputs["ready"] and h.missed_triggers == 1


def test_fault_drops_ready_and_raises_error():
    h = _online()
    h.set_fault(ErrorCode.CAMERA)
    assert not h.outputs["ready"] and h.outputs["error"] and h.outputs["error_code"] == ErrorCode.CAMERA
    # a trigger during the fault is still served (answered with ERROR by the station)
    assert h.update(Inputs(trigger=True, trigger_id=3), 0.0) is not None
    h.complete(Result(3, Verdict.ERROR, error_code=ErrorCode.CAMERA), 0.1)
    assert h.outputs["verdict"] == 3 and h.outputs["error"]
    h.set_fault(ErrorCode.NONE)
    assert h.outputs["error_code"] == ErrorCode.CAMERA  # the result's own code
    h.update(Inputs(results_ack=True), 0.2)
    h.update(Inputs(), 0.3)
    assert h.outputs["ready"] and h.outputs["error"]  # the latest verdict is still ERROR
    h.update(Inputs(trigger=True, trigger_id=4), 0.4)
    h.complete(Result(4, Verdict.PASS), 0.5)
    assert not h.outputs["error"] and h.outputs["pass"]


def test_heartbeat_counts_seconds():
    h = _online()
    h.update(Inputs(), 10.0)
    h.update(Inputs(), 12.5)
    assert h.outputs["heartbeat"] == 2
    h.update(Inputs(), 13.01)
    assert h.outputs["heartbeat"] == 3


def test_error_code_follows_the_fault_when_it_clears():
    """A camera fault that clears with no trigger in between: back to code 0, error low, ready up."""
    h = _online()
    h.complete(Result(1, Verdict.PASS), 0.0)
    h.update(Inputs(results_ack=True), 0.1)
    h.update(Inputs(), 0.2)
    h.set_fault(ErrorCode.CAMERA)
    assert h.outputs["error_code"] == ErrorCode.CAMERA and h.outputs["error"] and not h.outputs["ready"]
    h.set_fault(ErrorCode.NONE)
    assert h.outputs["error_code"] == 0 and not h.outputs["error"] and h.outputs["ready"]
