"""Full handshakes against a running station: pymodbus and mbpoll masters over TCP, RTU over a
pseudo-terminal pair, and client mode against a pymodbus server standing in for the PLC."""

import asyncio
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient

from edge_inspect.config import load_config
from edge_inspect.daemon import build_station
from edge_inspect.inspection.inspector import Inspector
from edge_inspect.plc.simulated import SimulatedPLC

from ..support.stations import free_port, run_station, write_station
from ..support.wait import async_wait_until, wait_until

VERDICT_CODE = {"PASS": 1, "FAIL": 2, "ERROR": 3}


def _rows(db: Path) -> dict[int, dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = {r["result_id"]: dict(r) for r in con.execute("select * from inspections")}
    con.close()
    return rows


def _assert_matches_log(results, db: Path):
    rows = _rows(db)
    for r in results:
        row = rows[r.trigger_id]
        assert r.result_id == r.trigger_id
        assert r.verdict == VERDICT_CODE[row["verdict"]]
        assert r.defect_count == row["defect_count"]
        assert r.failed_checks == row["failed_checks"]
        assert row["part_id"] == r.part_id


def test_tcp_handshake_with_pymodbus_master(tmp_path, tiny_bundle):
    path = write_station(tmp_path, tiny_bundle)

    async def plc(station):
        sim = SimulatedPLC(station.signal_map, port=station.config.plc.port)
        await sim.connect()
        results = [await sim.cycle(100 + i, 1, f"SN{i:04d}") for i in range(4)]
        # a trigger for an unknown recipe is answered with ERROR / BAD_RECIPE
        bad = await sim.cycle(200, 9, "SN-BAD")
        sim.close()
        return results, bad

    results, bad = asyncio.run(run_station(path, plc))
    _assert_matches_log(results, tmp_path / "data" / "inspections.db")
    assert bad.verdict == 3 and bad.error_code == 5
    assert all(r.cycle_ms > 0 for r in results)


def test_station_with_spinning_model_threads(tmp_path, tiny_bundle):
    """``model.spin: true`` reaches the model's sessions, and the handshake still answers."""
    path = write_station(tmp_path, tiny_bundle, model={"bundle": str(tiny_bundle), "max_new_tokens": 8, "spin": True})

    async def plc(station):
        options = [s.get_session_options() for s in station.model.backend._sessions.values()]
        assert {o.get_session_config_entry("session.intra_op.allow_spinning") for o in options} == {"1"}
        sim = SimulatedPLC(station.signal_map, port=station.config.plc.port)
        await sim.connect()
        results = [await sim.cycle(100 + i, 1, f"SN{i:04d}") for i in range(2)]
        sim.close()
        return results

    results = asyncio.run(run_station(path, plc))
    _assert_matches_log(results, tmp_path / "data" / "inspections.db")


class SlowInspector:
    """The station's inspector, each run held ``delay_s`` longer (passed in through build_station)."""

    def __init__(self, inspector: Inspector, delay_s: float):
        self.inspector, self.delay_s = inspector, delay_s

    def run(self, frame, recipe):
        time.sleep(self.delay_s)
        return self.inspector.run(frame, recipe)


def test_missed_trigger_is_counted(tmp_path, tiny_bundle):
    path = write_station(tmp_path, tiny_bundle)
    config, _ = load_config(path)
    model = config.model.load()
    slow = SlowInspector(Inspector(model, config.model.max_new_tokens), delay_s=0.6)  # busy past the second edge

    async def plc(station):
        sim = SimulatedPLC(station.signal_map, port=station.config.plc.port)
        await sim.connect()
        await sim.wait_for("ready", True)
        await sim.write("trigger_id", 1)
        await sim.write("recipe", 1)
        await sim.write("trigger", True)
        await sim.wait_for("busy", True)
        await sim.write("trigger", False)
        await async_wait_until(lambda: not station.last_inputs.trigger, 10, "the low level seen by the station")
        await sim.write("trigger", True)  # second edge while busy
        await async_wait_until(lambda: station.last_inputs.trigger, 10, "the second edge seen by the station")
        assert await sim.read("busy"), "the inspection ended too soon for this test"
        await sim.wait_for("results_valid", True)
        missed, code = await sim.read("missed_triggers"), await sim.read("error_code")
        sim.close()
        return missed, code, station.counters["missed_triggers"]

    missed, code, counted = asyncio.run(run_station(path, plc, model=model, inspector=slow))
    assert missed == 1 and counted == 1
    assert code in (0, 1)  # never MISSED_TRIGGER on a result (1 only if the model itself failed)


def _mbpoll(*args: str) -> str:
    result = subprocess.run(
        ["mbpoll", "-m", "tcp", "-0", "-1", "-q", *args], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _mbpoll_values(out: str) -> list[int]:
    return [int(line.split(":")[1].split()[0]) for line in out.splitlines() if line.startswith("[")]


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed (Debian package mbpoll)")
def test_tcp_handshake_with_mbpoll(tmp_path, tiny_bundle):
    path = write_station(tmp_path, tiny_bundle)
    port = str(load_config(path)[0].plc.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def read(table: str, address: int, count: int = 1) -> list[int]:
            return _mbpoll_values(_mbpoll("-p", port, "-t", table, "-r", str(address), "-c", str(count), "127.0.0.1"))

        def write(table: str, address: int, *values: int) -> None:
            _mbpoll("-p", port, "-t", table, "-r", str(address), "127.0.0.1", *[str(v) for v in values])

        def reads(table: str, address: int, value: int) -> bool:
            try:
                return read(table, address) == [value]
            except AssertionError:
                return False  # the server may not be listening yet

        def wait(table, address, value, timeout=30):
            wait_until(
                lambda: reads(table, address, value), timeout, f"table {table} address {address} == {value}", 0.05
            )

        seen = []
        for trigger_id in (501, 502):
            wait("1", 1, 1)  # ready (discrete input 1)
            write("4", 0, trigger_id, 1)  # trigger_id, recipe (holding registers 0-1)
            write("0", 0, 1)  # trigger coil
            wait("1", 3, 1)  # results_valid
            regs = read("3", 0, 5)  # result_id, verdict, defect_count, failed_checks, error_code
            write("0", 0, 0)
            write("0", 1, 1)  # results_ack
            wait("1", 3, 0)
            write("0", 1, 0)
            seen.append(regs)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows = _rows(tmp_path / "data" / "inspections.db")
    for regs in seen:
        row = rows[regs[0]]
        assert regs[1:4] == [VERDICT_CODE[row["verdict"]], row["defect_count"], row["failed_checks"]]
    assert [r[0] for r in seen] == [501, 502]


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (needed for a pty pair)")
def test_rtu_handshake_over_pty_pair(tmp_path, tiny_bundle):
    socat = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={tmp_path}/appliance", f"pty,raw,echo=0,link={tmp_path}/plc"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: (tmp_path / "appliance").exists() and (tmp_path / "plc").exists(), 10, "socat pty pair")
        path = write_station(
            tmp_path,
            tiny_bundle,
            plc={"transport": "rtu", "serial_port": str(tmp_path / "appliance"), "baudrate": 115200},
        )

        async def plc(station):
            client = AsyncModbusSerialClient(str(tmp_path / "plc"), baudrate=115200, timeout=1)
            sim = SimulatedPLC(station.signal_map, client=client)
            await sim.connect()
            results = [await sim.cycle(300 + i, 1, f"RTU{i}") for i in range(2)]
            sim.close()
            return results

        results = asyncio.run(run_station(path, plc))
        _assert_matches_log(results, tmp_path / "data" / "inspections.db")
    finally:
        socat.terminate()
        socat.wait(timeout=10)


def test_client_mode_against_a_plc_server(tmp_path, tiny_bundle):
    """The PLC is the Modbus server; the appliance polls its trigger and writes results into it."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from edge_inspect.plc.codec import decode, encode
    from edge_inspect.plc.signals import build_map

    port = free_port()
    path = write_station(tmp_path, tiny_bundle, plc={"mode": "client", "port": port, "poll_ms": 10})
    signal_map = build_map(mode="client")  # the default client map: outputs in coils / holding registers
    device = SimDevice(id=1, simdata=(
        [SimData(address=0, count=64, values=False, datatype=DataType.BITS)],
        [SimData(address=0, count=16, values=False, datatype=DataType.BITS)],
        [SimData(address=0, count=128, values=0, datatype=DataType.REGISTERS)],
        [SimData(address=0, count=16, values=0, datatype=DataType.REGISTERS)]))  # fmt: skip
    plc_server = None
    fc = {"coil": 1, "holding_register": 3}

    async def get(name):
        s = signal_map[name]
        return decode(s, await plc_server.context.async_getValues(1, fc[s.table], s.address, s.count))

    async def put(name, value):
        s = signal_map[name]
        await plc_server.context.async_setValues(1, fc[s.table], s.address, encode(s, value))

    async def equals(name, value) -> bool:
        return await get(name) == value

    async def wait(name, value, timeout=30):
        await async_wait_until(lambda: equals(name, value), timeout, f"{name} == {value}", poll_s=0.01)

    async def main():
        nonlocal plc_server
        plc_server = ModbusTcpServer(device, address=("127.0.0.1", port))
        await plc_server.serve_forever(background=True)
        config, sha = load_config(path)
        station = build_station(config, sha, path.parent)
        await station.start()
        seen = []
        try:
            for trigger_id in (11, 12):
                await wait("ready", True)
                await put("trigger_id", trigger_id)
                await put("recipe", 1)
                await put("part_id", f"C{trigger_id}")
                await put("trigger", True)
                await wait("results_valid", True)
                seen.append({n: await get(n) for n in ("result_id", "verdict", "defect_count", "failed_checks")})
                await put("trigger", False)
                await put("results_ack", True)
                await wait("results_valid", False)
                await put("results_ack", False)
        finally:
            await station.stop()
            await plc_server.shutdown()
        return seen

    seen = asyncio.run(main())
    rows = _rows(tmp_path / "data" / "inspections.db")
    assert [s["result_id"] for s in seen] == [11, 12]
    for s in seen:
        row = rows[s["result_id"]]
        assert (s["verdict"], s["defect_count"], s["failed_checks"]) == (
            VERDICT_CODE[row["verdict"]],
            row["defect_count"],
            row["failed_checks"],
        )


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed (Debian package mbpoll)")
def test_sigterm_publishes_offline_before_the_link_closes(tmp_path, tiny_bundle):
    """A PLC polling online/ready while the daemon gets SIGTERM reads online = 0, ready = 0 last."""
    import signal

    path = write_station(tmp_path, tiny_bundle)
    port = str(load_config(path)[0].plc.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reads: list[list[int]] = []
    try:
        deadline = time.monotonic() + 60
        while reads[-1:] != [[1, 1]]:  # online and ready
            assert time.monotonic() < deadline, "the station never came up"
            r = subprocess.run(
                ["mbpoll", "-m", "tcp", "-0", "-1", "-q", "-p", port, "-t", "1", "-r", "0", "-c", "2", "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if r.returncode == 0:
                reads.append(_mbpoll_values(r.stdout))
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:  # poll as a PLC does until the link closes
            r = subprocess.run(
                ["mbpoll", "-m", "tcp", "-0", "-1", "-q", "-p", port, "-t", "1", "-r", "0", "-c", "2", "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if r.returncode == 0:
                reads.append(_mbpoll_values(r.stdout))
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert reads[-1] == [0, 0], reads[-5:]
