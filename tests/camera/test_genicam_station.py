"""A station on a GenICam camera (Aravis' GigE Vision fake camera on loopback) driven by a PLC over
Modbus TCP: the software trigger's frame is inspected and its frame id and camera timestamp logged;
a hardware-triggered camera with no frame for the trigger answers ERROR with code 2; a feature the
camera refuses ends `edge-inspect run` with one line and exit 2."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from ..support.genicam_fake import SERIAL, FakeCamera, line_trigger_xml
from ..support.stations import run_station_with_plc, write_station


def genicam(**settings) -> dict:
    return {"source": "genicam", "stall_timeout_s": 10.0, "max_frame_age_ms": 3000.0,
            "genicam": {"serial": SERIAL, "pixel_format": "Mono8", **settings}}  # fmt: skip


def logged(tmp_path: Path) -> list[tuple]:
    db = sqlite3.connect(tmp_path / "data" / "inspections.db")
    return db.execute("select result_id, error, frame_id, camera_ts_ns from inspections order by id").fetchall()


def test_software_trigger_on_the_plcs_trigger_logs_the_frame_id(fake_camera, tmp_path, tiny_bundle):
    config = write_station(tmp_path, tiny_bundle, camera=genicam(trigger="software"))

    async def scenario(station, plc):
        results = [await plc.cycle(n, 1, f"P{n}") for n in (1, 2, 3)]
        return results, [station.camera.last_frame.frame_id]

    results, (last_id,) = asyncio.run(run_station_with_plc(config, scenario))
    assert [r.error_code for r in results] == [0, 0, 0]
    rows = logged(tmp_path)
    assert [r[0] for r in rows] == [1, 2, 3] and all(r[1] == "" for r in rows)
    ids = [r[2] for r in rows]
    assert ids[-1] == last_id
    assert all(b == (1 if a == 0xFFFF else a + 1) for a, b in zip(ids, ids[1:], strict=False))  # one frame per trigger
    assert all(r[3] > 0 for r in rows)


def test_hardware_trigger_without_a_frame_is_error_code_2_never_an_older_frame(aravis, tmp_path, tiny_bundle):
    fake = FakeCamera(aravis, line_trigger_xml(aravis, tmp_path))
    config = write_station(tmp_path, tiny_bundle, camera=genicam(trigger="hardware", trigger_source="Line0"))

    async def scenario(station, plc):
        await plc.wait_for("ready", True)
        fake.line_pulse()  # the photo-eye pulses the camera's line and the PLC sees the part
        with_frame = await plc.cycle(1, 1, "P1")
        without = await plc.cycle(2, 1, "P2")  # a trigger with no pulse on the line
        return with_frame, without

    try:
        with_frame, without = asyncio.run(run_station_with_plc(config, scenario))
    finally:
        fake.stop()
    assert with_frame.error_code != 2
    assert (without.verdict, without.error_code) == (3, 2)  # ERROR, camera
    rows = logged(tmp_path)
    assert rows[0][2] is not None and rows[1][2] is None  # the first frame is not inspected again
    assert "of the trigger (max_frame_age_ms)" in rows[1][1]


def test_a_feature_the_camera_refuses_ends_run_with_one_line_and_exit_2(fake_camera, tmp_path, tiny_bundle):
    config = write_station(tmp_path, tiny_bundle, camera=genicam(features={"GainRaw": 42}))
    done = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "run", str(config)],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge-inspect: error:")]
    assert errors == [
        f"edge-inspect: error: camera genicam:serial {SERIAL}: feature GainRaw: 42 is out of its range 0..10"
    ], done.stderr


def test_the_setup_pages_save_checks_the_features_against_the_running_camera(fake_camera, tmp_path):
    from ..support.web import login_headers, run_setup

    async def scenario(station, client, path):
        h = await login_headers(client, "integrator")
        opened = (await client.get("/api/setup/config")).json()
        data = yaml.safe_load(opened["yaml"])
        data["camera"]["genicam"]["features"] = {"ExposureTimeAbs": 900.0, "GainRaw": 42}
        bad = yaml.safe_dump(data, sort_keys=False)
        refused = await client.post("/api/setup/config", headers=h, json={"yaml": bad, "base_sha256": opened["sha256"]})
        data["camera"]["genicam"]["features"]["GainRaw"] = 4
        good = yaml.safe_dump(data, sort_keys=False)
        saved = await client.post("/api/setup/config", headers=h, json={"yaml": good, "base_sha256": opened["sha256"]})
        return bad, (refused.status_code, refused.json()), (saved.status_code, saved.json())

    bad, (status, body), (saved, result) = run_setup(tmp_path, scenario, camera=genicam(trigger="software"))
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if text.strip().startswith("GainRaw:"))
    assert status == 422
    assert body["problems"] == [
        f"{tmp_path / 'station.yaml'}:{line}: camera.genicam.features.GainRaw: camera genicam:serial {SERIAL}: "
        "feature GainRaw: 42 is out of its range 0..10"
    ]
    assert saved == 200 and result["restart_needed"] == [
        "camera.genicam"
    ]  # checked, saved; the camera takes it at restart
