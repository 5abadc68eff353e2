"""The optional parts of the handshake (plc.options), each driven by mbpoll against a station whose
model is a test double: result buffer with overrun, recipe change, identity registers, warning bit."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys

from edge_inspect import __version__
from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.inspection.inspector import Inspection
from edge_inspect.plc.handshake import Handshake, Inputs, Result
from edge_inspect.verdict import Verdict

from ..support.plc_harness import FakeInspector, Mbpoll, StationThread, fake_station_config, needs_mbpoll
from ..support.stations import free_port

# server-mode addresses of the optional signals (docs/plc.md)
OVERRUN, DONE, FAILED, WARNING = 7, 8, 9, 10  # discrete inputs
QUEUED, ACTIVE, MODEL_ID, CONFIG_ID, VERSION = 10, 11, 12, 14, 16  # input registers
RECIPE_CHANGE = 2  # coil


def _station(tmp_path, **options):
    port = free_port()
    recipes = [
        {"number": n, "name": f"r{n}", "checks": [{"name": "surface", "kind": "point", "prompt": "defects?"}]}
        for n in (1, 2)
    ]
    return fake_station_config(tmp_path, plc={"port": port, "options": options}, recipes=recipes), port


def _logged(tmp_path, column: str) -> dict[int, object]:
    con = sqlite3.connect(tmp_path / "data" / "inspections.db")
    rows = dict(con.execute(f"select result_id, {column} from inspections"))
    con.close()
    return rows


def _trigger(m: Mbpoll, trigger_id: int, wait_queued: int) -> None:
    m.write("4", 0, trigger_id)
    m.write("0", 0, 1)
    m.wait("3", QUEUED, wait_queued) if wait_queued else m.wait("1", OVERRUN, 1)
    m.write("0", 0, 0)


def _ack(m: Mbpoll) -> None:
    m.write("0", 1, 1)
    m.wait("1", 3, 0)
    m.write("0", 1, 0)


def test_result_buffer_in_the_state_machine():
    h = Handshake(result_buffer=1)
    h.set_online(True)
    assert h.update(Inputs(trigger=True, trigger_id=1), 0.0)
    h.complete(Result(1, Verdict.PASS), 0.1)
    h.update(Inputs(), 0.2)
    assert h.update(Inputs(trigger=True, trigger_id=2), 0.3)  # accepted while result 1 waits
    h.complete(Result(2, Verdict.FAIL), 0.4)
    assert h.outputs["results_queued"] == 2 and not h.outputs["ready"] and h.outputs["result_id"] == 1
    h.update(Inputs(), 0.5)
    h.update(Inputs(trigger=True, trigger_id=3), 0.6)
    h.complete(Result(3, Verdict.PASS), 0.7)
    assert h.outputs["results_overrun"] and h.outputs["results_queued"] == 2
    h.update(Inputs(results_ack=True), 0.8)
    assert not h.outputs["results_valid"] and not h.outputs["results_overrun"]
    h.update(Inputs(), 0.9)
    assert h.outputs["results_valid"] and h.outputs["result_id"] == 2 and h.outputs["fail"]


@needs_mbpoll
def test_result_buffer_queues_and_reports_overrun(tmp_path):
    path, port = _station(tmp_path, result_buffer=2)
    with StationThread(path):
        m = Mbpoll(port)
        m.wait("1", 1, 1)
        _trigger(m, 1, 1)
        _trigger(m, 2, 2)  # queued behind result 1
        _trigger(m, 3, 3)
        assert m.read("1", 1) == [0]  # ready low: the buffer is full
        _trigger(m, 4, 0)  # accepted anyway, its result overruns
        assert m.read("3", QUEUED) == [3] and m.read("3", 0) == [1]
        seen = []
        for _ in range(3):
            m.wait("1", 3, 1)
            seen.append(m.read("3", 0)[0])
            _ack(m)
            assert m.read("1", OVERRUN) == [0]
        assert seen == [1, 2, 3]
        assert m.read("1", 3) == [0] and m.read("3", QUEUED) == [0]
    assert set(_logged(tmp_path, "verdict")) == {1, 2, 3, 4}  # the overrun result is still logged


@needs_mbpoll
def test_recipe_change(tmp_path):
    path, port = _station(tmp_path, recipe_change=True)
    with StationThread(path):
        m = Mbpoll(port)
        assert m.read("3", ACTIVE) == [1]
        m.write("4", 1, 2)
        m.write("0", RECIPE_CHANGE, 1)
        m.wait("1", DONE, 1)
        assert m.read("3", ACTIVE) == [2] and m.read("1", FAILED) == [0]
        m.write("0", RECIPE_CHANGE, 0)
        m.wait("1", DONE, 0)
        m.write("4", 1, 9)  # not configured
        m.write("0", RECIPE_CHANGE, 1)
        m.wait("1", FAILED, 1)
        assert m.read("3", ACTIVE) == [2] and m.read("1", DONE) == [0]
        m.write("0", RECIPE_CHANGE, 0)
        m.wait("1", FAILED, 0)
        assert m.cycle(77, recipe=1)[0] == 77  # the recipe register is not what runs
    assert _logged(tmp_path, "recipe")[77] == 2


@needs_mbpoll
def test_identity_registers(tmp_path):
    path, port = _station(tmp_path, identity=True)
    with StationThread(path):
        regs = Mbpoll(port).read("3", MODEL_ID, 8)
    config_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (regs[0] << 16 | regs[1]) == int("f" * 8, 16)  # the fake model's sha256 prefix
    assert (regs[2] << 16 | regs[3]) == int(config_sha[:8], 16)
    text = b"".join(bytes([w >> 8, w & 0xFF]) for w in regs[4:8]).rstrip(b"\0").decode()
    assert text == __version__


class UncertainInspector(FakeInspector):
    """FAIL by policy on an uncertain yes/no answer, then clean PASSes."""

    def run(self, frame, recipe) -> Inspection:
        self.runs += 1
        if self.runs == 1:
            return Inspection(
                Verdict.FAIL, [CheckOutcome("label", "qa", "fail", "uncertain: answered yes (margin 0.05)")]
            )
        return Inspection(Verdict.PASS, [CheckOutcome("label", "qa", "pass", "answered yes")])


@needs_mbpoll
def test_warning_bit(tmp_path):
    path, port = _station(tmp_path, warning=True)
    with StationThread(path, UncertainInspector()):
        m = Mbpoll(port)
        m.wait("1", 1, 1)
        m.write("4", 0, 5, 1)
        m.write("0", 0, 1)
        m.wait("1", 3, 1)
        assert m.read("1", WARNING) == [1] and m.read("3", 1) == [2]
        m.write("0", 0, 0)
        _ack(m)
        assert m.cycle(6)[1] == 1
        assert m.read("1", WARNING) == [0]


def test_options_appear_in_the_map(tmp_path):
    path, _ = _station(tmp_path, result_buffer=8, recipe_change=True, identity=True, warning=True)
    out = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "modbus", "map", "--config", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    names = {s["name"] for s in json.loads(out.stdout)["signals"]}
    assert {
        "results_overrun",
        "results_queued",
        "recipe_change",
        "recipe_change_done",
        "recipe_change_failed",
        "recipe_active",
        "model_id",
        "config_id",
        "software_version",
        "warning",
    } <= names
    path, _ = _station(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "modbus", "map", "--config", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "warning" not in {s["name"] for s in json.loads(out.stdout)["signals"]}
