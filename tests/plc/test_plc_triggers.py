"""Trigger pulses shorter than the poll period (docs/plc.md, "Edges"): a 1→0→1 re-trigger with a
low phase of 0.3–30 ms is either inspected or counted as missed, never lost. Server mode against a
raw-socket master (written apart from the code under test), client mode against a PLC's memory
served by pymodbus; the appliance polls every 20 ms in both."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from ..support.plc_harness import (
    FakeInspector,
    StationThread,
    fake_station_config,
    make_station,
)
from ..support.plc_peer import PLCServer
from ..support.stations import free_port
from ..support.wait import async_wait_until, wait_until

LOW_PHASES_S = (0.0003, 0.001, 0.003, 0.0068, 0.015, 0.03)
INSPECT_S = 0.2  # long enough for a pulse to land while the appliance is busy


def _spin(seconds: float) -> None:
    """Wait without yielding: sleep() is too coarse below a millisecond."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class RawMaster:
    """A Modbus TCP master on one socket, frames built by hand."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.tid = 0

    def close(self) -> None:
        self.sock.close()

    def _frame(self, pdu: bytes) -> bytes:
        self.tid = (self.tid + 1) & 0xFFFF
        return struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, 1) + pdu

    def _answer(self) -> bytes:
        header = self._recv(7)
        return self._recv(struct.unpack(">HHHB", header)[2] - 1)

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the appliance closed the connection"
            data += chunk
        return data

    def request(self, pdu: bytes) -> bytes:
        self.sock.sendall(self._frame(pdu))
        answer = self._answer()
        assert answer[0] == pdu[0], answer
        return answer

    def coil(self, address: int, on: bool) -> None:
        self.request(struct.pack(">BHH", 5, address, 0xFF00 if on else 0))

    def registers(self, address: int, *values: int) -> None:
        self.request(struct.pack(f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values))

    def bit(self, address: int) -> int:  # a discrete input
        return self.request(struct.pack(">BHH", 2, address, 1))[2] & 1

    def input_register(self, address: int) -> int:
        return struct.unpack(">H", self.request(struct.pack(">BHH", 4, address, 1))[2:4])[0]

    def pulse_low(self, low_s: float) -> None:
        """trigger 1→0→1 with ``low_s`` between the two writes as sent (pipelined, answers read after)."""
        self.sock.sendall(self._frame(struct.pack(">BHH", 5, 0, 0)))
        _spin(low_s)
        self.sock.sendall(self._frame(struct.pack(">BHH", 5, 0, 0xFF00)))
        self._answer(), self._answer()


# server map: trigger coil 0, results_ack coil 1, trigger_id HR 0; DI ready 1, busy 2, results_valid 3;
# IR result_id 0, missed_triggers 9
def _server_outcome(m: RawMaster, trigger_id: int, missed: int) -> str:
    def decided() -> bool:
        return m.input_register(9) > missed or (m.bit(3) == 1 and m.input_register(0) == trigger_id)

    try:
        wait_until(decided, 3, f"trigger {trigger_id} inspected or counted missed")
    except AssertionError:
        return "lost"
    return "missed" if m.input_register(9) > missed else "inspected"


def _server_ack(m: RawMaster) -> None:
    m.coil(1, True)
    wait_until(lambda: m.bit(3) == 0, 5, "results_valid low")
    m.coil(1, False)


def test_short_retriggers_in_server_mode(tmp_path):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port, "poll_ms": 20})
    outcomes: dict[str, list[str]] = {"idle": [], "busy": []}
    with StationThread(path, FakeInspector()) as st:
        m = RawMaster(port)
        try:
            wait_until(lambda: m.bit(1) == 1, 10, "ready")
            m.registers(0, 1, 1)  # trigger_id, recipe
            m.coil(0, True)
            wait_until(lambda: m.bit(3) == 1, 10, "results_valid")
            _server_ack(m)  # trigger stays high: ready stays low
            trigger_id = 1
            for low in LOW_PHASES_S:  # the appliance idle, waiting for trigger to drop
                trigger_id += 1
                m.registers(0, trigger_id, 1)
                missed = m.input_register(9)
                m.pulse_low(low)
                outcomes["idle"].append(_server_outcome(m, trigger_id, missed))
                if outcomes["idle"][-1] == "inspected":
                    _server_ack(m)
            st.inspector.delay_s = INSPECT_S
            for low in LOW_PHASES_S:  # the appliance busy with the previous trigger
                m.coil(0, False)
                wait_until(lambda: m.bit(1) == 1, 10, "ready")
                trigger_id += 1
                m.registers(0, trigger_id, 1)
                m.coil(0, True)
                wait_until(lambda: m.bit(2) == 1, 5, "busy")
                missed = m.input_register(9)
                m.registers(0, trigger_id + 1000, 1)
                m.pulse_low(low)
                outcomes["busy"].append(_server_outcome(m, trigger_id + 1000, missed))
                wait_until(lambda: m.bit(3) == 1, 5, "results_valid")
                assert m.input_register(0) == trigger_id  # the accepted trigger's result, not the missed one's
                _server_ack(m)
        finally:
            m.close()
    print(f"server mode, low phases {LOW_PHASES_S} s: {outcomes}")
    assert outcomes == {"idle": ["inspected"] * len(LOW_PHASES_S), "busy": ["missed"] * len(LOW_PHASES_S)}


def test_short_retriggers_in_client_mode(tmp_path):
    """The PLC writes a new trigger_id in each low phase (docs/plc.md): a low phase the appliance's
    poll never sees shows as a new trigger_id under a trigger that stayed high."""
    port = free_port()
    path = fake_station_config(tmp_path, plc={"mode": "client", "port": port, "poll_ms": 20})
    outcomes: dict[str, list[str]] = {"idle": [], "busy": []}

    async def pulse(plc: PLCServer, low: float, trigger_id: int) -> None:
        await plc.put("trigger", False)
        await plc.put("trigger_id", trigger_id)
        if low < 0.002:
            _spin(low)  # holds the loop: the appliance cannot read the PLC's memory in between
        else:
            await asyncio.sleep(low)
        await plc.put("trigger", True)

    async def outcome(plc: PLCServer, trigger_id: int, missed: int) -> str:
        async def decided() -> bool:
            valid = await plc.get("results_valid") and await plc.get("result_id") == trigger_id
            return valid or await plc.get("missed_triggers") > missed

        try:
            await async_wait_until(decided, 3, f"trigger {trigger_id} inspected or counted missed", 0.002)
        except AssertionError:
            return "lost"
        return "missed" if await plc.get("missed_triggers") > missed else "inspected"

    async def ack(plc: PLCServer) -> None:
        await plc.put("results_ack", True)
        await plc.wait("results_valid", False)
        await plc.put("results_ack", False)

    async def main() -> None:
        plc = PLCServer(port)
        await plc.start()
        inspector = FakeInspector()
        station = make_station(path, inspector)
        await station.start()
        try:
            await plc.wait("ready", True)
            await plc.put("recipe", 1)
            await plc.put("trigger_id", 1)
            await plc.put("trigger", True)
            await plc.wait("results_valid", True)
            await ack(plc)  # trigger stays high
            trigger_id = 1
            for low in LOW_PHASES_S:
                trigger_id += 1
                missed = await plc.get("missed_triggers")
                await pulse(plc, low, trigger_id)
                outcomes["idle"].append(await outcome(plc, trigger_id, missed))
                if outcomes["idle"][-1] == "inspected":
                    await ack(plc)
            inspector.delay_s = INSPECT_S
            for low in LOW_PHASES_S:
                await plc.put("trigger", False)
                await plc.wait("ready", True)
                trigger_id += 1
                await plc.put("trigger_id", trigger_id)
                await plc.put("trigger", True)
                await plc.wait("busy", True)
                missed = await plc.get("missed_triggers")
                await pulse(plc, low, trigger_id + 1000)
                outcomes["busy"].append(await outcome(plc, trigger_id + 1000, missed))
                await plc.wait("results_valid", True)
                assert await plc.get("result_id") == trigger_id
                await ack(plc)
        finally:
            await station.stop()
            await plc.stop()
        assert not plc.violations, plc.violations

    asyncio.run(main())
    print(f"client mode, low phases {LOW_PHASES_S} s: {outcomes}")
    assert outcomes == {"idle": ["inspected"] * len(LOW_PHASES_S), "busy": ["missed"] * len(LOW_PHASES_S)}
