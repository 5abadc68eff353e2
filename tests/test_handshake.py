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


def test_trigger_while_busy_is_missed_not_queued():
    h = _online()
    assert h.update(Inputs(trigger=True, trigger_id=1), 0.0) is not None
    assert h.update(Inputs(trigger=False), 0.1) is None
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.2) is None  # second edge while busy
    assert h.missed_triggers == 1 and h.outputs["missed_triggers"] == 1
    assert h.outputs["error_code"] == ErrorCode.MISSED_TRIGGER and h.outputs["error"]
    h.complete(Result(1, Verdict.PASS), 0.3)
    # the result of the request in flight carries the missed trigger: error bit and code 3 stay up
    assert h.outputs["result_id"] == 1 and h.outputs["pass"] and h.outputs["verdict"] == 1
    assert h.outputs["error_code"] == ErrorCode.MISSED_TRIGGER and h.outputs["error"] and not h.last_cycle_clean
    h.update(Inputs(results_ack=True), 0.4)  # the PLC acknowledged the result that carried it
    assert h.outputs["error_code"] == 0 and not h.outputs["error"]
    h.update(Inputs(), 0.5)
    assert h.update(Inputs(trigger=False), 0.6) is None  # nothing was queued
    h.update(Inputs(trigger=True, trigger_id=2), 0.7)
    h.complete(Result(2, Verdict.FAIL), 0.8)
    assert h.last_cycle_clean and h.outputs["error_code"] == 0 and not h.outputs["error"]


def test_missed_trigger_while_results_wait_is_published_with_the_next_result():
    h = _online()
    h.update(Inputs(trigger=True, trigger_id=1), 0.0)
    h.complete(Result(1, Verdict.PASS), 0.1)
    h.update(Inputs(trigger=False), 0.2)
    h.update(Inputs(trigger=True), 0.3)  # a trigger before the result was acknowledged
    assert h.missed_triggers == 1 and h.outputs["error"] and h.outputs["error_code"] == 3
    h.update(Inputs(results_ack=True), 0.4)  # this result did not carry the flag: it stays
    h.update(Inputs(), 0.5)
    assert h.outputs["error_code"] == 3 and h.outputs["ready"]
    h.update(Inputs(trigger=True, trigger_id=2), 0.6)
    h.complete(Result(2, Verdict.PASS), 0.7)
    assert h.outputs["error_code"] == 3 and not h.last_cycle_clean
    h.update(Inputs(trigger=True, results_ack=True), 0.8)
    assert h.outputs["error_code"] == 0 and not h.outputs["error"]


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
