"""Stop/restart rounds of a GenICam camera under a station driven by a PLC over Modbus TCP (the
suite runs a few: tests/camera/test_genicam_faults.py; ``benchmarks/camera_faults.py`` runs 20 and
prints the figures). The camera is Aravis' GigE Vision fake on loopback: stopping it is a camera
unplugged mid-run, a new one with the same serial is the camera plugged in again."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .genicam_fake import SERIAL, FakeCamera
from .stations import run_station_with_plc, write_station

GAIN = 7.0  # set by the config; a fresh fake starts at its own default, so reading it back proves it re-applied


@dataclass
class Round:
    lost_after_s: float  # camera stopped → camera_lost raised
    ready_low: bool  # the PLC saw ready low while the camera was gone
    back_after_s: float  # camera started again → ready high
    gain_after: float  # the fake's gain after the reconnect
    results: list[int]  # error codes of the round's inspections after the reconnect


@dataclass
class FaultRun:
    rounds: list[Round] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)  # (trigger id, error, frame_id, camera_ts_ns) from the log
    triggered_ns: dict[int, int] = field(default_factory=dict)  # trigger id → wall clock just before the PLC set it
    stale: int = 0  # inspected frames the camera took before their trigger (the fake stamps frames by the host clock)
    repeated: int = 0  # inspected frames whose id the inspection before, on the same connection, had used
    counters: dict = field(default_factory=dict)  # the station's camera_counters at the end


def fake_gain(fake: FakeCamera) -> float:
    """The gain the fake camera holds (its GainRaw register)."""
    return float(fake.fake.read_register(0x110).value)  # ArvFakeCamera's GainRaw register


def station_config(tmp_path: Path, bundle: Path) -> Path:
    camera = {
        "source": "genicam", "stall_timeout_s": 5.0, "max_frame_age_ms": 3000.0, "reconnect_max_s": 0.5,
        "genicam": {"serial": SERIAL, "pixel_format": "Mono8", "trigger": "software", "features": {"GainRaw": int(GAIN)}},
    }  # fmt: skip
    return write_station(tmp_path, bundle, camera=camera)


async def _wait(condition, timeout_s: float = 20.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def run_rounds(aravis: Any, tmp_path: Path, bundle: Path, rounds: int, parts_per_round: int = 2) -> FaultRun:
    """``rounds`` times: inspect, stop the camera, wait for camera_lost, start it again, inspect."""
    config = station_config(tmp_path, bundle)
    out = FaultRun()
    fakes = [FakeCamera(aravis)]

    async def scenario(station, plc):
        trigger = 0
        await plc.wait_for("ready", True)
        for _ in range(parts_per_round):
            trigger += 1
            out.triggered_ns[trigger] = time.time_ns()
            await plc.cycle(trigger, 1, f"P{trigger}")
        for _ in range(rounds):
            fakes[-1].stop()
            lost_after = await _wait(lambda: station.alarms.active("camera_lost"))
            ready_low = not await plc.read("ready")
            fakes.append(FakeCamera(aravis))
            back_after = await _wait(lambda: station.camera.status == "ok" and station.handshake.outputs["ready"])
            gain = fake_gain(fakes[-1])
            codes = []
            for _ in range(parts_per_round):
                trigger += 1
                out.triggered_ns[trigger] = time.time_ns()
                codes.append((await plc.cycle(trigger, 1, f"P{trigger}")).error_code)
            out.rounds.append(Round(lost_after, ready_low, back_after, gain, codes))
        out.counters = station.status()["camera_counters"]

    try:
        asyncio.run(run_station_with_plc(config, scenario))
    finally:
        fakes[-1].stop()
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    out.rows = db.execute("select result_id, error, frame_id, camera_ts_ns from inspections order by id").fetchall()
    db.close()
    for trigger_id, _error, frame_id, ts in out.rows:
        if frame_id is not None and ts < out.triggered_ns[trigger_id]:
            out.stale += 1
    for start in range(0, len(out.rows), parts_per_round):  # one connection's inspections
        ids = [row[2] for row in out.rows[start : start + parts_per_round] if row[2] is not None]
        out.repeated += len(ids) - len(set(ids))
    return out
