"""Modbus conformance of the appliance as server, driven by independent masters: mbpoll (libmodbus)
and raw frames over TCP sockets and a socat pty pair (RTU). The model is a test double; the
station, its log and the Modbus layer are real. docs/plc.md describes every rule tested here."""

from __future__ import annotations

import logging
import os
import random
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import time

import pytest

from edge_inspect.plc.pdu import crc16

from ..support.plc_harness import (
    Mbpoll,
    PtyPair,
    StationThread,
    fake_station_config,
    needs_mbpoll,
    needs_socat,
    wait_for_polls,
)
from ..support.stations import free_port
from ..support.wait import wait_until


# -- raw frame helpers ----------------------------------------------------------------------------------
def tcp_request(port: int, unit: int, pdu: bytes, tid: int = 7, timeout: float = 2.0) -> bytes | None:
    """One MBAP request; the response PDU (without MBAP), or None if none came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
        try:
            header = _recv_exact(s, 7)
        except TimeoutError:
            return None
        rtid, pid, length, runit = struct.unpack(">HHHB", header)
        assert (rtid, pid, runit) == (tid, 0, unit)
        return _recv_exact(s, length - 1)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise TimeoutError("closed")
        data += chunk
    return data


def rtu(address: int, pdu: bytes) -> bytes:
    body = bytes([address]) + pdu
    return body + struct.pack("<H", crc16(body))


class RawSerial:
    """The PLC end of the pty pair, raw bytes."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def close(self) -> None:
        os.close(self.fd)

    def request(self, frame: bytes, wait_s: float = 0.5) -> bytes:
        """Send a frame; whatever comes back within ``wait_s`` (b"" = silence)."""
        os.write(self.fd, frame)
        data, deadline = b"", time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data += os.read(self.fd, 256)
                deadline = min(deadline, time.monotonic() + 0.1)  # the rest of this frame
        return data


def read_pdu(fc: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", fc, address, count)


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture
def tcp_station(tmp_path):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port, "device_id": 3})
    with StationThread(path) as st:
        st.port = port
        yield st


@pytest.fixture
def rtu_station(tmp_path):
    with PtyPair(tmp_path) as pty:
        path = fake_station_config(
            tmp_path, plc={"transport": "rtu", "serial_port": pty.a, "baudrate": 115200, "device_id": 5}
        )
        with StationThread(path) as st:
            st.pty = pty
            raw = RawSerial(pty.b)
            st.raw = raw
            try:
                yield st
            finally:
                raw.close()


# -- 5: addressing ------------------------------------------------------------------------------------
def test_tcp_unit_ids(tcp_station, caplog):
    port = tcp_station.port
    for unit in (0, 3, 255):  # answered
        assert tcp_request(port, unit, read_pdu(2, 0, 7))[0] == 2
    for unit in (1, 4, 254):  # one documented rule: exception 0x0B, never a traceback
        assert tcp_request(port, unit, read_pdu(2, 0, 7)) == bytes([0x82, 0x0B])
    assert "Traceback" not in caplog.text and "KeyError" not in caplog.text


@needs_socat
def test_rtu_answers_only_its_address_and_applies_broadcast_writes(rtu_station):
    raw = rtu_station.raw
    answer = raw.request(rtu(5, read_pdu(3, 0, 2)))
    assert answer[:3] == bytes([5, 3, 4]) and crc16(answer[:-2]) == struct.unpack("<H", answer[-2:])[0]
    for other in (1, 4, 6, 247):
        assert raw.request(rtu(other, read_pdu(3, 0, 2)), 0.3) == b""
    # broadcast: a write is applied, nothing is answered; a broadcast read is ignored
    assert raw.request(rtu(0, struct.pack(">BHH", 6, 1, 4242)), 0.3) == b""
    assert raw.request(rtu(0, read_pdu(3, 0, 2)), 0.3) == b""
    answer = raw.request(rtu(5, read_pdu(3, 1, 1)))
    assert answer[3:5] == struct.pack(">H", 4242)


# -- 14: exceptions ----------------------------------------------------------------------------------
BAD = [
    (read_pdu(1, 0, 0), 0x81, 3),  # quantity 0
    (read_pdu(1, 0, 2001), 0x81, 3),  # quantity over 2000
    (read_pdu(3, 0, 126), 0x83, 3),  # over 125 registers
    (read_pdu(4, 0, 0), 0x84, 3),
    (read_pdu(3, 60000, 2), 0x83, 2),  # past the map
    (struct.pack(">BHH", 5, 0, 0x1234), 0x85, 3),  # coil value other than 0x0000 / 0xFF00
    (struct.pack(">BHHB", 16, 0, 2, 2) + b"\0\1", 0x90, 3),  # byte count ≠ 2 × quantity
    (struct.pack(">BHHB", 15, 0, 9, 1) + b"\xff", 0x8F, 3),  # byte count ≠ ceil(quantity / 8)
    (bytes([3, 0, 0]), 0x83, 3),  # truncated PDU
    (bytes([0x2B, 0x0E, 1, 0]), 0xAB, 1),  # unsupported function (read device identification)
    (bytes([0x41, 1, 2]), 0xC1, 1),  # user-defined function code
    (bytes([0x08, 0, 0, 0x12, 0x34]), 0x88, 1),  # diagnostics
]


@pytest.mark.parametrize("pdu,fc,code", BAD)
def test_tcp_exception_responses(tcp_station, pdu, fc, code):
    assert tcp_request(tcp_station.port, 3, pdu) == bytes([fc, code])


@needs_socat
def test_rtu_exception_responses(rtu_station):
    for pdu, fc, code in BAD:
        answer = rtu_station.raw.request(rtu(5, pdu))
        assert answer == rtu(5, bytes([fc, code])), (pdu.hex(), answer.hex())


@needs_mbpoll
def test_coil_write_other_than_on_off_is_refused(tcp_station):
    """mbpoll can only send 0 / 1, so the raw frame does the 0x1234 case (see BAD); mbpoll checks the
    legal values still work."""
    m = Mbpoll(tcp_station.port, unit=3)
    m.write("0", 1, 1)
    assert m.read("0", 1) == [1]
    m.write("0", 1, 0)
    assert tcp_request(tcp_station.port, 3, struct.pack(">BHH", 5, 1, 0x1234)) == bytes([0x85, 3])
    assert m.read("0", 1) == [0]


# -- 8: malformed TCP frames ---------------------------------------------------------------------------
@needs_mbpoll
def test_fuzzed_frames_then_a_handshake(tcp_station, caplog):
    port = tcp_station.port
    rng = random.Random(11)
    good = socket.create_connection(("127.0.0.1", port), timeout=2)  # an unaffected connection
    caplog.set_level(logging.INFO, logger="edge_inspect")
    before = len(caplog.records)
    sent = 0
    while sent < 2000:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            for _ in range(rng.randint(1, 40)):
                kind = rng.random()
                if kind < 0.3:  # random bytes
                    frame = rng.randbytes(rng.randint(1, 300))
                elif kind < 0.6:  # a valid header around random PDUs
                    pdu = rng.randbytes(rng.randint(1, 252))
                    frame = struct.pack(">HHHB", rng.randint(0, 65535), 0, len(pdu) + 1, 3) + pdu
                else:  # a bad protocol id or length
                    frame = struct.pack(">HHHB", 1, rng.choice([0, 1, 0xFFFF]), rng.choice([0, 1, 255, 60000]), 3)
                try:
                    s.sendall(frame)
                except OSError:
                    break  # the appliance closed this connection: expected after a bad header
                sent += 1
    good.sendall(struct.pack(">HHHB", 9, 0, 6, 3) + read_pdu(2, 0, 2))
    assert _recv_exact(good, 9)[7] == 2  # still answered
    good.close()
    m = Mbpoll(port, unit=3)
    # the fuzz may have written trigger / results_ack and started inspections: settle as a PLC would
    m.write("0", 0, 0, 0)
    m.wait("1", 2, 0)  # not busy
    if m.read("1", 3) == [1]:  # a result waits for its ack
        m.write("0", 1, 1)
        m.wait("1", 3, 0)
        m.write("0", 1, 0)
    regs = m.cycle(4711)
    assert regs[0] == 4711
    grew = len(caplog.records) - before
    assert grew <= 5, [r.getMessage() for r in caplog.records[before:]]


# -- 7: absent PLC in server mode ----------------------------------------------------------------------
@needs_mbpoll
def test_server_mode_reports_an_absent_plc(tmp_path):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port, "timeout_s": 0.5})
    with StationThread(path) as st:
        wait_until(lambda: st.station.status()["plc"] == "absent", 20, "plc absent")
        assert st.station.alarms.active("plc_absent")
        m = Mbpoll(port)
        wait_until(lambda: bool(m.read("1", 0, 2)) and st.station.status()["plc"] == "ok", 20, "cleared by a request")
        assert m.cycle(12)[0] == 12


# -- 6: serial port lost and back ----------------------------------------------------------------------
@needs_socat
@needs_mbpoll
def test_serial_port_lost_and_reopened(tmp_path):
    pty = PtyPair(tmp_path).start()
    path = fake_station_config(tmp_path, plc={"transport": "rtu", "serial_port": pty.a, "baudrate": 115200})
    try:
        with StationThread(path) as st:
            m = Mbpoll(device=pty.b)
            assert m.cycle(21)[0] == 21
            pty.stop()  # the USB adapter is unplugged
            wait_until(lambda: st.station.status()["plc"] == "lost", 10, "plc lost")
            assert st.station.alarms.active("plc_lost")
            pty.start()  # and plugged in again
            assert m.cycle(22)[0] == 22
            assert st.station.status()["plc"] == "ok" and not st.station.alarms.active("plc_lost")
    finally:
        pty.stop()


@needs_socat
@needs_mbpoll
def test_serial_reopen_raises_no_absent_alarm_unless_the_plc_stays_silent(tmp_path):
    """The port gone for longer than timeout_s is `plc_lost`, not `plc_absent`; once it is back the
    PLC has timeout_s to speak before it counts as absent."""
    from edge_inspect.station.events import AlarmRaised

    timeout_s = 1.0
    pty = PtyPair(tmp_path).start()
    path = fake_station_config(
        tmp_path, plc={"transport": "rtu", "serial_port": pty.a, "baudrate": 115200, "timeout_s": timeout_s}
    )
    raised: list[str] = []
    try:
        with StationThread(path) as st:
            st.station.events.subscribe(lambda e: raised.append(e.code) if isinstance(e, AlarmRaised) else None)
            m = Mbpoll(device=pty.b)
            assert m.cycle(23)[0] == 23
            pty.stop()
            wait_until(lambda: st.station.status()["plc"] == "lost", 10, "plc lost")
            time.sleep(2 * timeout_s)  # the scenario: away for longer than timeout_s
            pty.start()
            wait_until(lambda: st.station.status()["plc"] != "lost", 10, "serial port reopened")
            assert m.cycle(24)[0] == 24  # the PLC speaks at once
            assert "plc_absent" not in raised and st.station.status()["plc"] == "ok", raised
            silent_from = time.monotonic()  # then stays silent: absent after timeout_s, not before
            wait_until(lambda: st.station.status()["plc"] == "absent", 10, "plc absent")
            assert time.monotonic() - silent_from >= timeout_s and raised.count("plc_absent") == 1
    finally:
        pty.stop()
    assert raised.count("plc_lost") == 1


# -- 11, 12: missed trigger, results_ack edge ----------------------------------------------------------
@needs_mbpoll
def test_missed_trigger_is_reported_on_the_status_never_on_a_result(tmp_path):
    """A trigger while busy, then one while the result waits for its ack: each counted once in
    missed_triggers, the alarm raised once; the result on display and the next one keep their own
    error bit and error code."""
    from edge_inspect.station.events import AlarmRaised

    from ..support.plc_harness import FakeInspector

    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port})
    raised: list[str] = []
    result_regs = [0, 1, 2, 3, 4, 6, 7, 8]  # all input registers but the heartbeat (5) and missed_triggers (9)
    with StationThread(path, FakeInspector(delay_s=0.8)) as st:
        st.station.events.subscribe(lambda e: raised.append(e.code) if isinstance(e, AlarmRaised) else None)
        m = Mbpoll(port)
        m.wait("1", 1, 1)
        m.write("4", 0, 31, 1)
        m.write("0", 0, 1)
        m.wait("1", 2, 1)  # busy
        m.write("0", 0, 0)
        m.write("0", 0, 1)  # a second edge while busy: missed
        wait_until(lambda: m.read("3", 9) == [1], 10, "missed_triggers 1")
        assert m.read("1", 2) == [1], "the inspection ended too soon for this test"
        m.wait("1", 3, 1)
        regs, bits = m.read("3", 0, 10), m.read("1", 0, 7)
        assert regs[0] == 31 and regs[4] == 0 and bits[6] == 0 and regs[9] == 1  # code 0, error bit low
        assert st.station.alarms.active("missed_trigger")
        m.write("0", 0, 0)
        m.write("0", 0, 1)  # a trigger while results_valid is high: missed
        wait_until(lambda: m.read("3", 9) == [2], 10, "missed_triggers 2")
        after = m.read("3", 0, 10)
        assert [after[i] for i in result_regs] == [regs[i] for i in result_regs]  # the shown result unchanged
        assert m.read("1", 0, 7) == bits
        m.write("0", 0, 0)
        m.write("0", 1, 1)  # ack
        m.wait("1", 3, 0)
        m.write("0", 1, 0)
        st.inspector.delay_s = 0
        assert m.cycle(32)[4] == 0 and m.read("1", 6) == [0]  # the next result is not marked either
        assert m.read("3", 9) == [2]
        # nothing was missed from 32's trigger to its result: that clean cycle clears the alarm
        wait_until(lambda: not st.station.alarms.active("missed_trigger"), 10, "alarm cleared by a clean cycle")
    assert raised.count("missed_trigger") == 1


@needs_mbpoll
def test_results_ack_held_high_does_not_complete_the_cycle(tmp_path):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port})
    with StationThread(path) as st:
        m = Mbpoll(port)
        m.wait("1", 1, 1)
        m.write("0", 1, 1)  # ack high from before
        m.write("4", 0, 41, 1)
        m.write("0", 0, 1)
        m.wait("1", 3, 1)
        wait_for_polls(st.station, 10, lambda inputs: inputs.results_ack)  # ten reads with ack high from before
        assert m.read("1", 3) == [1]  # results_valid held, not a pulse of one poll
        m.write("0", 1, 0)
        wait_for_polls(st.station, 3, lambda inputs: not inputs.results_ack)
        assert m.read("1", 3) == [1]
        m.write("0", 1, 1)  # the rising edge
        m.wait("1", 3, 0)
        assert st.station.handshake.state.value == "release"


# -- 10: part_id text ----------------------------------------------------------------------------------
def _logged_part_ids(tmp_path) -> dict[int, str]:
    con = sqlite3.connect(tmp_path / "data" / "inspections.db")
    rows = dict(con.execute("select result_id, part_id from inspections"))
    con.close()
    return rows


@needs_mbpoll
@pytest.mark.parametrize(
    "encoding,order,text",
    [
        ("ascii", "high_first", "SN-0042"),
        ("ascii", "low_first", "SN-0042"),
        ("utf-8", "high_first", "Ä-12"),
        ("shift_jis", "low_first", "部品7"),
    ],
)
def test_part_id_encodings(tmp_path, encoding, order, text):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port, "part_id_encoding": encoding, "part_id_byte_order": order})
    data = text.encode(encoding).ljust(20, b"\0")
    pairs = [(data[i], data[i + 1]) for i in range(0, 20, 2)]
    words = [(a << 8) | b if order == "high_first" else a | (b << 8) for a, b in pairs]
    with StationThread(path):
        m = Mbpoll(port)
        m.write("4", 2, *words)
        assert m.cycle(51)[0] == 51
    assert _logged_part_ids(tmp_path)[51] == text


@needs_mbpoll
def test_undecodable_part_id_is_kept_escaped(tmp_path):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port})
    with StationThread(path):
        m = Mbpoll(port)
        m.write("4", 2, 0x4142, 0xFF43)  # "AB", 0xFF, "C"
        m.cycle(61)
    assert _logged_part_ids(tmp_path)[61] == "AB\\xffC"


# -- 9: start-up errors ---------------------------------------------------------------------------------
def _run(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(path)], capture_output=True, text=True, timeout=60
    )


def test_run_with_the_modbus_port_in_use(tmp_path):
    from ..support.errors import assert_one_line_error

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = fake_station_config(tmp_path, plc={"port": port})
        assert_one_line_error(_run(path), f"127.0.0.1:{port}", "in use")


def test_run_with_a_missing_serial_device(tmp_path):
    from ..support.errors import assert_one_line_error

    path = fake_station_config(tmp_path, plc={"transport": "rtu", "serial_port": str(tmp_path / "ttyUSB9")})
    assert_one_line_error(_run(path), "ttyUSB9", "no such device")


@needs_socat
def test_run_with_a_busy_serial_device(tmp_path):
    import fcntl

    from ..support.errors import assert_one_line_error

    with PtyPair(tmp_path) as pty:
        holder = os.open(pty.a, os.O_RDWR | os.O_NOCTTY)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another Modbus program holding the port does
        try:
            path = fake_station_config(tmp_path, plc={"transport": "rtu", "serial_port": pty.a})
            assert_one_line_error(_run(path), pty.a, "busy")
        finally:
            os.close(holder)


# -- 1, 2: client mode, observed and driven by mbpoll through the PLC's memory ---------------------------
@needs_mbpoll
def test_client_mode_handshake_through_the_plcs_memory_with_mbpoll(tmp_path):
    """The PLC is a pymodbus server; mbpoll plays the PLC program (writes trigger, reads results in
    the PLC's memory) while the appliance, as client, polls and writes there."""
    import asyncio
    import threading

    from ..support.plc_peer import PLCServer

    plc_port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    plc = PLCServer(plc_port)
    asyncio.run_coroutine_threadsafe(plc.start(), loop).result(10)
    path = fake_station_config(tmp_path, plc={"mode": "client", "port": plc_port, "poll_ms": 10})
    try:
        with StationThread(path):
            m = Mbpoll(plc_port)
            seen = []
            for trigger_id in (81, 82):
                m.wait("0", 17, 1)  # ready (coil 17 in client mode)
                m.write("4", 0, trigger_id, 1)
                m.write("0", 0, 1)
                m.wait("0", 19, 1)  # results_valid
                seen.append(m.read("4", 100, 5) + m.read("0", 20, 3))  # results, pass / fail / error
                m.write("0", 0, 0)
                m.write("0", 1, 1)
                m.wait("0", 19, 0)
                m.write("0", 1, 0)
            assert seen == [[81, 1, 0, 0, 0, 1, 0, 0], [82, 2, 1, 1, 0, 0, 1, 0]]
            # the PLC program clears its memory: online, ready and the counters come back, not result 82
            m.write("0", 16, 0, 0, 0, 0, 0, 0, 0)
            m.write("4", 100, *[0] * 10)
            m.wait("4", 107, 2)  # inspection_count (low word) rewritten
            m.wait("0", 16, 1)
            m.wait("0", 17, 1)
            assert m.read("4", 100, 5) == [0] * 5 and m.read("0", 19, 4) == [0] * 4
    finally:
        asyncio.run_coroutine_threadsafe(plc.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# -- edges shorter than the poll period (server mode) ---------------------------------------------------
@needs_mbpoll
def test_short_trigger_and_ack_pulses_are_not_lost(tmp_path):
    port = free_port()
    path = fake_station_config(tmp_path, plc={"port": port, "poll_ms": 500})
    with StationThread(path):
        m = Mbpoll(port)
        m.wait("1", 1, 1)
        m.write("4", 0, 99, 1)
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:  # a pulse of well under 500 ms
            for value in (0xFF00, 0x0000):
                s.sendall(struct.pack(">HHHB", 1, 0, 6, 1) + struct.pack(">BHH", 5, 0, value))
                _recv_exact(s, 12)
        m.wait("1", 3, 1)
        assert m.read("3", 0) == [99]
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:  # an ack pulse
            for value in (0xFF00, 0x0000):
                s.sendall(struct.pack(">HHHB", 1, 0, 6, 1) + struct.pack(">BHH", 5, 1, value))
                _recv_exact(s, 12)
        m.wait("1", 3, 0)
        m.wait("1", 1, 1)
