"""`edge-inspect model shadow start|stop|status` through the real command line against a running
station (the demo student as production, a candidate whose yes/no answers are swapped): the station
picks up the start within its check period, shadows, ends on the stop; status reads the log; each
refusal is one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from ..support.shadow_bundles import store_with_candidate
from ..support.stations import run_station, write_station
from ..support.wait import async_wait_until

RECIPE = [{"number": 1, "name": "plate", "checks": [
    {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"}]}]  # fmt: skip


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "model", "shadow", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_start_status_stop_from_the_command_line_while_the_station_runs(tmp_path):
    _, production, candidate = store_with_candidate(tmp_path / "data", tmp_path / "candidate")
    config = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 24}, recipes=RECIPE, plc={"enabled": False},
        camera={"source": "synthetic", "synthetic": {"seed": 3, "defect_rate": 0.0}}, storage={"dir": "data"},
    )  # fmt: skip
    where = ("--config", str(config))

    refused = [
        _cli("start", "0123456789abcdef", *where, cwd=tmp_path),
        _cli("start", "production", *where, cwd=tmp_path),
        _cli("start", "--parts", "0", "--hours", "0", *where, cwd=tmp_path),
    ]
    for r in refused:
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no model version 0123456789abcdef" in refused[0].stderr
    assert f"version {production[:12]} is production" in refused[1].stderr
    bad = _cli("start", "--parts", "many", *where, cwd=tmp_path)
    assert bad.returncode == 2 and "argument --parts: 'many' is not a whole number" in bad.stderr
    assert "no shadow run in the log" in _cli("status", *where, cwd=tmp_path).stdout

    async def scenario(station):
        started = await asyncio.to_thread(_cli, "start", "--parts", "50", "--user", "qa-lead", *where, cwd=tmp_path)
        assert started.returncode == 0 and f"shadow of version {candidate}" in started.stdout, started.stderr
        await async_wait_until(lambda: station.shadow.state == "running", 60, "the station starting the shadow")
        for _ in range(2):
            await station.inspect(1)
            await async_wait_until(lambda: station.shadow.run.outstanding == 0, 60)
        running = await asyncio.to_thread(_cli, "status", *where, cwd=tmp_path)
        stopped = await asyncio.to_thread(_cli, "stop", "--user", "integrator", *where, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        await async_wait_until(lambda: station.shadow.state == "ended", 30, "the station ending the shadow")
        return running.stdout

    running = asyncio.run(run_station(config, scenario))
    assert f"run 1: {candidate[:12]} beside production {production[:12]}, running" in running
    assert "started" in running and "by qa-lead, bounded by 50 parts" in running
    done = _cli("status", *where, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "ended" in lines[1] and lines[1].endswith("stopped by integrator")
    assert "shadowed 2, skipped 0 (line busy 0, shadow busy 0), disagreements 2, agreement 0.0%" in done.stdout
    assert "check surface: 2 of 2 agree (100.0%)" in done.stdout and "check label: 0 of 2 agree (0.0%)" in done.stdout
    assert "production PASS, shadow FAIL; differs: verdict, label" in done.stdout
    report = json.loads(_cli("status", "--json", *where, cwd=tmp_path).stdout)
    assert report["request"]["action"] == "stop" and report["run"]["disagreements"] == 2


def _request(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "data" / "models" / "shadow.json").read_text())


def test_start_takes_what_it_is_not_told_from_model_shadow_in_the_station_file(tmp_path):
    _, _, candidate = store_with_candidate(tmp_path / "data", tmp_path / "candidate")
    shadow = {"version": candidate[:10], "parts": 37, "hours": 0.5}
    config = write_station(
        tmp_path, Path("production"), recipes=RECIPE, plc={"enabled": False}, storage={"dir": "data"},
        model={"shadow": shadow},
    )  # fmt: skip
    where = ("--config", str(config))
    assert _cli("start", *where, cwd=tmp_path).returncode == 0
    assert {k: _request(tmp_path)[k] for k in ("version", "parts", "hours")} == {
        "version": candidate, "parts": 37, "hours": 0.5}  # fmt: skip
    started = _cli("start", "candidate", "--parts", "0", *where, cwd=tmp_path)
    assert started.returncode == 0 and "ending after 0.5 hours" in started.stdout, started.stderr
    assert (_request(tmp_path)["parts"], _request(tmp_path)["hours"]) == (0, 0.5)
    assert _cli("start", "--hours", "2", *where, cwd=tmp_path).returncode == 0
    assert (_request(tmp_path)["parts"], _request(tmp_path)["hours"]) == (37, 2.0)

    config.write_text(config.read_text().replace("parts: 37", "parts: -1"))  # the file's mistake, with its line
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if "parts: -1" in t)
    bad = _cli("start", *where, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith(f"{config}:{line}: model.shadow.parts: "), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_web_api_takes_what_the_body_leaves_out_from_model_shadow(tmp_path):
    from ..support.web import USERS, login_headers, run_web

    _, _, candidate = store_with_candidate(tmp_path / "data", tmp_path / "candidate")
    path = write_station(
        tmp_path, Path("production"), recipes=RECIPE, plc={"enabled": False}, storage={"dir": str(tmp_path / "data")},
        model={"max_new_tokens": 8, "shadow": {"parts": 37, "hours": 0.5}},
        web={"enabled": True, "open_view": True, "users": USERS},
    )  # fmt: skip

    async def scenario(station, client):
        integrator = await login_headers(client, "integrator")
        started = (await client.post("/api/models/shadow/start", json={}, headers=integrator)).json()
        stopped = (await client.post("/api/models/shadow/stop", json={}, headers=integrator)).json()
        nothing = (await client.post("/api/models/shadow/stop", json={}, headers=integrator)).json()
        return started, stopped, nothing

    started, stopped, nothing = run_web(path, scenario)
    request = started["request"]
    assert (request["version"], request["parts"], request["hours"]) == (candidate, 37, 0.5)
    assert stopped["request"]["seq"] == 2 and stopped["now"]["last"]["reason"] == "stopped by integrator"
    assert nothing["request"] is None and nothing["nothing"] == "no shadow run is going"  # and nothing recorded:
    assert _request(tmp_path)["seq"] == 2


def test_stop_with_no_run_going_says_so_and_records_nothing(tmp_path):
    store_with_candidate(tmp_path / "data", tmp_path / "candidate")
    config = write_station(
        tmp_path, Path("production"), recipes=RECIPE, plc={"enabled": False}, storage={"dir": "data"}
    )
    where = ("--config", str(config))
    nothing = _cli("stop", *where, cwd=tmp_path)
    assert nothing.returncode == 0 and nothing.stdout == "no shadow run is going; nothing to stop\n", nothing.stderr
    assert not (tmp_path / "data" / "models" / "shadow.json").exists()
    assert _cli("start", "--parts", "5", *where, cwd=tmp_path).returncode == 0  # asked for; no station took it up
    stopped = _cli("stop", *where, cwd=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.startswith("stop asked for (request 2)")
    assert _request(tmp_path)["action"] == "stop"  # the start is called off before a station begins it
    again = _cli("stop", *where, cwd=tmp_path)
    assert again.stdout == "no shadow run is going; nothing to stop\n" and _request(tmp_path)["seq"] == 2
