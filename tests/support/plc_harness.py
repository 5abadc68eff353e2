"""PLC test harness: a station whose model is a fast test double (everything else real: camera,
log, handshake, Modbus), a station run in its own thread for blocking masters (mbpoll, raw
sockets), mbpoll helpers and a socat pty pair."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edge_inspect.config import load_config
from edge_inspect.daemon import build_station
from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.inspection.inspector import Inspection
from edge_inspect.station.core import Station
from edge_inspect.verdict import Verdict

from .stations import write_station
from .wait import wait_until

needs_mbpoll = pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed (Debian mbpoll)")
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (Debian socat)")


class FakeModel:
    """Stands in for the VLM: the station only needs its identity; inspections come from FakeInspector."""

    sha256 = "f" * 64
    fallback_reason = None


class FakeInspector:
    """Alternates PASS / FAIL (FAIL with one defect and check 0 failed); ``delay_s`` per run."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s, self.runs = delay_s, 0

    def run(self, frame, recipe) -> Inspection:
        self.runs += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.runs % 2:
            outcomes = [CheckOutcome("surface", "point", "pass", "found 0")]
            return Inspection(Verdict.PASS, outcomes)
        outcomes = [CheckOutcome("surface", "point", "fail", "found 1", [(0.5, 0.5)], counted=1)]
        return Inspection(Verdict.FAIL, outcomes)


def fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "fake-bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "manifest.json").write_text(json.dumps({"files": {}}))
    return bundle


def fake_station_config(tmp_path: Path, **sections) -> Path:
    sections.setdefault("storage", {"dir": str(tmp_path / "data"), "save_pass_every": 0})
    sections.setdefault("camera", {"source": "synthetic", "synthetic": {"seed": 5, "width": 64, "height": 64}})
    return write_station(tmp_path, fake_bundle(tmp_path), **sections)


def make_station(path: Path, inspector: FakeInspector | None = None) -> Station:
    config, sha = load_config(path)
    return build_station(config, sha, path.parent, model=FakeModel(), inspector=inspector or FakeInspector())


class StationThread:
    """A station on its own event loop in a thread, for tests that drive it with blocking masters."""

    def __init__(self, path: Path, inspector: FakeInspector | None = None):
        self.path, self.inspector = path, inspector
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.station: Station | None = None

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> StationThread:
        self.thread.start()

        async def start():
            self.station = make_station(self.path, self.inspector)
            await self.station.start()

        self.call(start())
        return self

    def stop(self) -> None:
        if self.station is not None:
            station, self.station = self.station, None
            self.call(station.stop())

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def wait_for_polls(station: Station, count: int = 3, where=lambda inputs: True, timeout: float = 10.0) -> None:
    """Wait until the station has read the PLC's inputs ``count`` more times with ``where(inputs)`` true:
    what a level must outlast to be seen, counted instead of guessed from the poll period. Each read is
    a new Inputs (station.last_inputs); a read this misses only makes the wait longer."""
    seen: list = []

    def enough() -> bool:
        inputs = station.last_inputs
        if inputs is not None and where(inputs) and not any(inputs is s for s in seen):
            seen.append(inputs)
        return len(seen) >= count

    wait_until(enough, timeout, f"{count} reads of the PLC's inputs", every=0.001)


# -- mbpoll -------------------------------------------------------------------------------------------
def mbpoll(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    """``mbpoll -0 -1 -q`` (0-based addresses, one poll, quiet) with ``args``."""
    result = subprocess.run(["mbpoll", "-0", "-1", "-q", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def mbpoll_values(out: str) -> list[int]:
    return [int(line.split(":")[1].split()[0]) for line in out.splitlines() if line.startswith("[")]


class Mbpoll:
    """One Modbus master (mbpoll) bound to a TCP port or an RTU serial device."""

    def __init__(self, port: int | None = None, device: str | None = None, unit: int = 1, baud: int = 115200):
        if device is None:
            self.target = ["-m", "tcp", "-p", str(port), "-a", str(unit)]
            self.host = "127.0.0.1"
        else:
            self.target = ["-m", "rtu", "-b", str(baud), "-P", "none", "-a", str(unit), "-o", "1"]
            self.host = device

    def read(self, table: str, address: int, count: int = 1) -> list[int]:
        out = mbpoll(*self.target, "-t", table, "-r", str(address), "-c", str(count), self.host).stdout
        return mbpoll_values(out)

    def write(self, table: str, address: int, *values: int) -> None:
        mbpoll(*self.target, "-t", table, "-r", str(address), self.host, *[str(v) for v in values])

    def wait(self, table: str, address: int, value: int, timeout: float = 20) -> None:
        def ok() -> bool:
            try:
                return self.read(table, address) == [value]
            except AssertionError:
                return False

        wait_until(ok, timeout, f"table {table} address {address} == {value}")

    def cycle(self, trigger_id: int, recipe: int = 1, server_map: bool = True) -> list[int]:
        """One handshake on the default server map; returns result_id, verdict, defect_count,
        failed_checks, error_code."""
        self.wait("1", 1, 1)  # ready
        self.write("4", 0, trigger_id, recipe)
        self.write("0", 0, 1)  # trigger
        self.wait("1", 3, 1)  # results_valid
        regs = self.read("3", 0, 5)
        self.write("0", 0, 0)
        self.write("0", 1, 1)  # results_ack
        self.wait("1", 3, 0)
        self.write("0", 1, 0)
        return regs


# -- socat pty pair ------------------------------------------------------------------------------------
class PtyPair:
    """``socat pty,link=A pty,link=B``: a null-modem cable between two serial device paths."""

    def __init__(self, folder: Path, a: str = "appliance", b: str = "plc"):
        self.a, self.b = str(folder / a), str(folder / b)
        self.proc: subprocess.Popen | None = None

    def start(self) -> PtyPair:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: Path(self.a).exists() and Path(self.b).exists(), 10, "socat pty pair")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
