"""Client mode (the PLC is the Modbus server) against a real pymodbus server standing in for the
PLC: result integrity through a delaying TCP proxy, PLC restarts, link loss, boot without PLC."""

from __future__ import annotations

import asyncio
import random
import sqlite3

from ..support.plc_harness import (
    FakeInspector,
    PtyPair,
    fake_station_config,
    make_station,
    needs_socat,
)
from ..support.plc_peer import CLIENT_MAP, PLCServer
from ..support.stations import free_port
from ..support.wait import async_wait_until

OUTPUTS = [s.name for s in CLIENT_MAP.signals if s.direction == "appliance_to_plc"]


class DelayProxy:
    """A TCP proxy on loopback that delays a random share of the chunks by a random 0..max_ms
    (order kept)."""

    def __init__(self, upstream_port: int, max_ms: float = 5.0, share: float = 0.3, seed: int = 0):
        self.upstream_port, self.max_ms, self.share = upstream_port, max_ms, share
        self.rng = random.Random(seed)
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None

    async def _pump(self, reader, writer) -> None:
        try:
            while data := await reader.read(4096):
                if self.rng.random() < self.share:
                    await asyncio.sleep(self.rng.random() * self.max_ms / 1000)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _connection(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.server.close()


def _client_station(tmp_path, port: int, **plc):
    return fake_station_config(tmp_path, plc={"mode": "client", "port": port, "poll_ms": 5, **plc})


def test_results_are_complete_before_results_valid_rises(tmp_path):
    """500 cycles, alternating verdicts, random link delays: the PLC never sees a stale or mixed result."""
    plc_port = free_port()
    proxy = DelayProxy(plc_port)
    path = _client_station(tmp_path, proxy.port)
    cycles = 500

    async def main():
        plc = PLCServer(plc_port)
        await plc.start()
        await proxy.start()
        station = make_station(path, FakeInspector())
        await station.start()
        try:
            for i in range(cycles):
                await plc.cycle(1000 + i)
        finally:
            await station.stop()
            await proxy.stop()
            await plc.stop()
        return plc.snapshots, plc.violations

    snapshots, violations = asyncio.run(main())
    assert not violations, violations[:5]
    assert len(snapshots) == cycles
    con = sqlite3.connect(tmp_path / "data" / "inspections.db")
    logged = dict(con.execute("select result_id, verdict from inspections"))
    con.close()
    bad = []
    for i, snap in enumerate(snapshots):
        expected = 1 if i % 2 == 0 else 2  # the fake inspector alternates PASS, FAIL
        want = {
            "result_id": 1000 + i,
            "verdict": expected,
            "defect_count": expected - 1,
            "failed_checks": expected - 1,
            "error_code": 0,
            "pass": expected == 1,
            "fail": expected == 2,
            "error": False,
        }
        if snap != want or {"PASS": 1, "FAIL": 2}[logged[1000 + i]] != expected:
            bad.append((i, snap))
    assert not bad, f"{len(bad)} stale or mixed results, first: {bad[:3]}"


def test_plc_restart_with_empty_memory_gets_online_ready_and_a_cleared_result_area(tmp_path):
    """The counters (inspection_count, missed_triggers) are the appliance's and come back; the
    result area is cleared: a restarted PLC never triggered what it held."""
    port = free_port()
    path = _client_station(tmp_path, port)

    async def outputs_written(plc: PLCServer, result_id: int) -> bool:
        return (
            await plc.get("online")
            and await plc.get("ready")
            and await plc.get("result_id") == result_id
            and await plc.get("inspection_count") == 1
        )

    async def main():
        plc = PLCServer(port)
        await plc.start()
        station = make_station(path)
        await station.start()
        try:
            await plc.cycle(7)
            await async_wait_until(lambda: outputs_written(plc, 7), 20, "outputs in the PLC")
            # 1. the PLC program clears its memory, the connection stays
            for name in OUTPUTS:
                await plc.put(name, 0)
            await async_wait_until(lambda: outputs_written(plc, 0), 20, "outputs rewritten after a memory reset")
            # 2. the PLC restarts: connection dropped, a new server with empty memory
            await plc.stop()
            plc = PLCServer(port)
            await plc.start()
            await async_wait_until(lambda: outputs_written(plc, 0), 20, "outputs rewritten after a PLC restart")
            assert await plc.get("verdict") == 0 and not await plc.get("pass") and not await plc.get("results_valid")
            await plc.cycle(8)  # and the handshake goes on
            assert await plc.get("result_id") == 8 and [s["result_id"] for s in plc.snapshots] == [8]
        finally:
            await station.stop()
            await plc.stop()

    asyncio.run(main())


async def _metrics(station) -> str:
    """The HMI's Prometheus text, through the web app (no socket)."""
    import httpx

    from edge_inspect.web.app import build_app

    transport = httpx.ASGITransport(app=build_app(station, station.config))
    async with httpx.AsyncClient(transport=transport, base_url="http://station") as client:
        return (await client.get("/metrics")).text


def test_link_loss_alarm_reconnect_and_clean_stop(tmp_path):
    port = free_port()
    path = _client_station(tmp_path, port)

    async def main():
        plc = PLCServer(port)
        await plc.start()
        station = make_station(path)
        await station.start()
        try:
            await plc.cycle(1)
            assert station.status()["plc"] == "ok"
            assert "edge_inspect_plc_up 1" in await _metrics(station)
            await plc.stop()
            await async_wait_until(lambda: station.status()["plc"] == "lost", 20, "plc lost")
            assert station.alarms.active("plc_lost") and not station.alarms.active("internal")
            assert not station.status()["ready"] and not station.handshake.outputs["online"]
            assert "edge_inspect_plc_up 0" in await _metrics(station)
            plc = PLCServer(port)
            await plc.start()
            await async_wait_until(lambda: station.status()["plc"] == "ok", 20, "reconnected")
            assert not station.alarms.active("plc_lost")
            assert "edge_inspect_plc_up 1" in await _metrics(station)
            await plc.cycle(2)
        finally:
            await station.stop()  # must not raise
            await plc.stop()
        return station

    station = asyncio.run(main())
    assert not station.alarms.active("internal")


def test_boot_with_plc_unreachable_keeps_retrying(tmp_path):
    port = free_port()
    path = _client_station(tmp_path, port)

    async def main():
        station = make_station(path)
        await station.start()  # no PLC: not fatal
        try:
            assert station.status()["plc"] == "lost" and not station.status()["ready"]
            assert station.alarms.active("plc_lost")
            await asyncio.sleep(0.5)
            assert station.status()["plc"] == "lost" and not station.status()["ready"]
            plc = PLCServer(port)
            await plc.start()
            try:
                await async_wait_until(lambda: station.status()["plc"] == "ok", 20, "connected after boot")
                await plc.wait("online", True)
                await plc.cycle(3)
                assert await plc.get("result_id") == 3
            finally:
                await plc.stop()
        finally:
            await station.stop()

    asyncio.run(main())


def test_stop_writes_offline_to_the_plc(tmp_path):
    port = free_port()
    path = _client_station(tmp_path, port)

    async def main():
        plc = PLCServer(port)
        await plc.start()
        station = make_station(path)
        await station.start()
        try:
            await plc.wait("ready", True)
            await plc.wait("online", True)
            await station.stop()
            assert not await plc.get("online") and not await plc.get("ready")
        finally:
            await plc.stop()

    asyncio.run(main())


def test_result_buffer_in_client_mode_never_changes_a_result_under_results_valid(tmp_path):
    """Queued results are shown one after another: between two of them results_valid must be seen
    low by the PLC, and each must be complete when it rises."""
    plc_port = free_port()
    path = fake_station_config(
        tmp_path, plc={"mode": "client", "port": plc_port, "poll_ms": 5, "options": {"result_buffer": 3}}
    )

    async def main():
        plc = PLCServer(plc_port)
        await plc.start()
        station = make_station(path, FakeInspector())
        await station.start()
        try:
            trigger_id = 0
            for _ in range(10):
                for _ in range(3):  # three parts without an ack
                    trigger_id += 1
                    await plc.put("trigger_id", trigger_id)
                    await plc.put("recipe", 1)
                    await plc.put("trigger", True)

                    async def inspected(n=trigger_id):  # monotonic, so never a stale match
                        return await plc.get("inspection_count") == n

                    await async_wait_until(inspected, 20, f"inspection {trigger_id}", poll_s=0.002)
                    await plc.put("trigger", False)
                    # the trigger stays low until the appliance has read it low
                    await async_wait_until(
                        lambda: not station.last_inputs.trigger, 10, "trigger read low", poll_s=0.002
                    )
                for _ in range(3):
                    await plc.wait("results_valid", True)
                    await plc.put("results_ack", True)
                    await plc.wait("results_valid", False)
                    await plc.put("results_ack", False)
        finally:
            await station.stop()
            await plc.stop()
        return plc.snapshots, plc.violations

    snapshots, violations = asyncio.run(main())
    assert not violations, violations[:5]
    assert [s["result_id"] for s in snapshots] == list(range(1, 31))
    con = sqlite3.connect(tmp_path / "data" / "inspections.db")
    logged = dict(con.execute("select result_id, verdict from inspections"))
    con.close()
    for s in snapshots:
        verdict = {"PASS": 1, "FAIL": 2}[logged[s["result_id"]]]
        assert (s["verdict"], s["pass"], s["fail"], s["defect_count"]) == (
            verdict,
            verdict == 1,
            verdict == 2,
            verdict - 1,
        )


def test_new_results_under_a_high_results_valid_drop_it_first(tmp_path):
    """When two results follow each other between two writes (a slow link, a failed write), the
    PLC must still see results_valid low before the new result and high only after it."""
    from edge_inspect.plc.client import ClientLink
    from edge_inspect.plc.handshake import Handshake, Inputs, Result
    from edge_inspect.plc.settings import LinkSettings
    from edge_inspect.verdict import Verdict

    port = free_port()

    async def main():
        plc = PLCServer(port)
        await plc.start()
        link = ClientLink(CLIENT_MAP, LinkSettings(mode="client", port=port))
        await link.start()
        h = Handshake(result_buffer=2)
        h.set_online(True)
        try:
            h.update(Inputs(trigger=True, trigger_id=1), 0.0)
            h.complete(Result(1, Verdict.PASS), 0.1)
            await link.write_outputs(dict(h.outputs))
            h.update(Inputs(), 0.2)
            h.update(Inputs(trigger=True, trigger_id=2), 0.3)
            h.complete(Result(2, Verdict.FAIL, defect_count=3), 0.4)  # queued behind 1
            h.update(Inputs(results_ack=True), 0.5)
            h.update(Inputs(), 0.6)  # 1 acknowledged, 2 shown: never written in between
            assert h.outputs["results_valid"] and h.outputs["result_id"] == 2
            await link.write_outputs(dict(h.outputs))
        finally:
            await link.stop()
            await plc.stop()
        return plc

    plc = asyncio.run(main())
    assert not plc.violations, plc.violations
    assert [s["result_id"] for s in plc.snapshots] == [1, 2]
    assert plc.snapshots[1]["verdict"] == 2 and plc.snapshots[1]["defect_count"] == 3


@needs_socat
def test_client_mode_over_rtu_with_a_serial_port_lost_and_back(tmp_path):
    pty = PtyPair(tmp_path).start()
    path = fake_station_config(
        tmp_path, plc={"mode": "client", "transport": "rtu", "serial_port": pty.a, "baudrate": 115200, "poll_ms": 10}
    )

    async def main():
        plc = PLCServer(pty.b)
        await plc.start()
        station = make_station(path)
        await station.start()
        try:
            await plc.cycle(91)
            assert await plc.get("result_id") == 91
            await plc.stop()
            pty.stop()  # the cable is pulled
            await async_wait_until(lambda: station.status()["plc"] == "lost", 20, "plc lost")
            assert station.alarms.active("plc_lost")
            pty.start()
            plc = PLCServer(pty.b)
            await plc.start()
            await async_wait_until(lambda: station.status()["plc"] == "ok", 20, "reconnected")
            await plc.wait("online", True)
            await plc.cycle(92)
            assert await plc.get("result_id") == 92 and not station.alarms.active("plc_lost")
        finally:
            await station.stop()
            await plc.stop()

    try:
        asyncio.run(main())
    finally:
        pty.stop()
