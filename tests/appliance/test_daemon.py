"""The daemon as a process: systemd readiness/watchdog, SIGKILL during a burst, SIGTERM, a pulled camera."""

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from edge_inspect.config import load_config
from edge_inspect.plc.signals import build_map
from edge_inspect.plc.simulated import PLCTimeout, SimulatedPLC

from ..support.paths import REPO_ROOT
from ..support.stations import run_station_with_plc, write_station


def _start_daemon(config: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies():
    result = subprocess.run(
        ["systemd-analyze", "verify", str(REPO_ROOT / "systemd" / "edge-inspect.service")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ready_and_watchdog_on_notify_socket(tmp_path, tiny_bundle):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    proc = _start_daemon(write_station(tmp_path, tiny_bundle), {"NOTIFY_SOCKET": sock_path})
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ("READY=1" in messages and "WATCHDOG=1" in messages):
            messages += sock.recv(4096).decode().splitlines()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        sock.close()
    assert "READY=1" in messages and "WATCHDOG=1" in messages, messages
    assert messages.index("READY=1") < messages.index("WATCHDOG=1") or messages.count("WATCHDOG=1") > 1
    assert proc.returncode == 0, out


def test_sigkill_during_burst_loses_nothing_the_plc_read(tmp_path, tiny_bundle):
    config = write_station(tmp_path, tiny_bundle, model={"bundle": str(tiny_bundle), "max_new_tokens": 4})
    port = load_config(config)[0].plc.port
    proc = _start_daemon(config)
    read_ids: list[int] = []

    async def burst():
        plc = SimulatedPLC(build_map(), port=port)
        await plc.connect(attempts=300)
        trigger_id = 0
        try:
            while True:
                trigger_id += 1
                result = await plc.cycle(trigger_id, 1, f"K{trigger_id}", timeout_s=10)
                read_ids.append(result.result_id)
                if len(read_ids) == 100:  # keep triggering; the kill lands mid-burst
                    asyncio.get_running_loop().call_later(0.05, proc.send_signal, signal.SIGKILL)
        except (TimeoutError, asyncio.TimeoutError, PLCTimeout, ConnectionError, OSError, AttributeError):
            pass  # the appliance is gone
        finally:
            plc.close()

    try:
        asyncio.run(asyncio.wait_for(burst(), 300))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(read_ids) >= 100
    con = sqlite3.connect(tmp_path / "data" / "inspections.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    logged = {r[0] for r in con.execute("select result_id from inspections")}
    con.close()
    assert set(read_ids) <= logged, sorted(set(read_ids) - logged)


def test_pulled_camera_gives_error_then_recovers(tmp_path, tiny_bundle):
    frames = tmp_path / "frames"
    frames.mkdir()
    from edge_inspect.sim import render_part

    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), render_part(i).image)
    config_path = write_station(tmp_path, tiny_bundle, camera={
        "source": "folder", "path": str(frames), "stall_timeout_s": 0.5, "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5})  # fmt: skip

    async def scenario(station, plc):
        first = await plc.cycle(1, 1, "ok-before")
        assert first.error_code != 2
        await plc.wait_for("ready", True)
        frames.rename(tmp_path / "unplugged")
        pulled = time.monotonic()
        await plc.wait_for("ready", False, timeout_s=2.0)
        dropped_after = time.monotonic() - pulled
        assert await plc.read("error") and await plc.read("error_code") == 2
        # a trigger while the camera is gone is answered at once with ERROR / camera
        await plc.write("trigger_id", 2)
        await plc.write("recipe", 1)
        await plc.write("trigger", True)
        await plc.wait_for("results_valid", True, timeout_s=5)
        during = (await plc.read("verdict"), await plc.read("error_code"))
        await plc.write("trigger", False)
        await plc.write("results_ack", True)
        await plc.wait_for("results_valid", False)
        await plc.write("results_ack", False)
        (tmp_path / "unplugged").rename(frames)
        back = time.monotonic()
        await plc.wait_for("ready", True, timeout_s=10)
        recovered_after = time.monotonic() - back
        after = await plc.cycle(3, 1, "ok-after")
        return dropped_after, during, recovered_after, after, station.camera.status

    dropped_after, during, recovered_after, after, status = asyncio.run(run_station_with_plc(config_path, scenario))
    assert dropped_after < 2.0
    assert during == (3, 2)
    assert after.error_code != 2 and status == "ok"
    print(f"ready dropped {dropped_after:.2f} s after the pull; back {recovered_after:.2f} s after the plug")


def test_sigterm_finishes_the_inspection_in_flight(tmp_path, tiny_bundle):
    config = write_station(tmp_path, tiny_bundle, model={"bundle": str(tiny_bundle), "max_new_tokens": 256})
    port = load_config(config)[0].plc.port
    proc = _start_daemon(config)

    async def main():
        plc = SimulatedPLC(build_map(), port=port)
        await plc.connect(attempts=300)
        await plc.wait_for("ready", True)
        await plc.write("trigger_id", 77)
        await plc.write("recipe", 1)
        await plc.write("trigger", True)
        await plc.wait_for("busy", True)
        proc.send_signal(signal.SIGTERM)
        plc.close()

    asyncio.run(main())
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    con = sqlite3.connect(tmp_path / "data" / "inspections.db")
    assert [r[0] for r in con.execute("select result_id from inspections")] == [77]
