"""Shadow on the line, through the real parts: a station on the model store's production (the demo
student), a candidate (the same student with its yes and no answer tokens swapped, so the label check
always disagrees) judging in its own SCHED_IDLE process after `results_valid`, a real Modbus peer, the
SQLite log and review sampling."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

from edge_inspect.fleet.messages import Topics, status_payload
from edge_inspect.modelstore import request_start, request_stop
from edge_inspect.station.events import ShadowChanged

from ..support.shadow_bundles import store_with_candidate
from ..support.stations import run_station, run_station_with_plc, write_station
from ..support.wait import async_wait_until

RECIPE = [{"number": 1, "name": "plate", "checks": [
    {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"}]}]  # fmt: skip


def _station(tmp_path: Path, **sections) -> tuple[Path, str, str]:
    store, production, candidate = store_with_candidate(tmp_path / "data", tmp_path / "candidate")
    config = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 24, **sections.pop("model", {})}, recipes=RECIPE,
        camera={"source": "synthetic", "synthetic": {"seed": 7, "defect_rate": 0.0}},
        storage={"save_pass_every": 0}, **sections,
    )  # fmt: skip
    return config, production, candidate


def _rows(data: Path, sql: str, args=()) -> list[tuple]:
    with sqlite3.connect(data / "inspections.db") as db:
        return db.execute(sql, args).fetchall()


async def _ended(station, timeout: float = 60) -> None:
    await async_wait_until(lambda: station.shadow.state == "ended", timeout, "the shadow run's end", poll_s=0.05)


def test_the_shadow_judges_after_results_valid_logs_beside_production_and_ends_by_parts(tmp_path):
    config, production, candidate = _station(tmp_path, review_sampling={"per_hour": 2})
    data = tmp_path / "data"
    events: list[ShadowChanged] = []
    loop_sql: list[str] = []

    async def scenario(station, plc):
        station.events.subscribe(lambda e: events.append(e) if isinstance(e, ShadowChanged) else None)
        loop_thread = threading.get_ident()
        station.store.conn.set_trace_callback(
            lambda sql: loop_sql.append(sql) if threading.get_ident() == loop_thread else None
        )
        request_start(station.shadow.models, "candidate", "qa-lead", 3, 0)
        await station.shadow.check()
        assert station.shadow.state == "running"
        pid = station.shadow.run.process.pid
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE  # the OS keeps it behind production
        valid_at = {}
        for trigger_id in range(1, 6):
            await plc.wait_for("ready", True)
            await plc.write("trigger_id", trigger_id)
            await plc.write("recipe", 1)
            await plc.write("trigger", True)
            await plc.wait_for("results_valid", True)
            valid_at[trigger_id] = time.time()  # the PLC has seen results_valid
            await plc.write("trigger", False)
            await plc.write("results_ack", True)
            await plc.wait_for("results_valid", False)
            await plc.write("results_ack", False)
            await async_wait_until(lambda: station.shadow.run is None or station.shadow.run.outstanding == 0, 60)
        await _ended(station)
        station.store.conn.set_trace_callback(None)
        return valid_at, station.status()

    valid_at, status = asyncio.run(run_station_with_plc(config, scenario))
    assert not loop_sql, loop_sql[:3]  # the shadow's log work ran off the PLC's event loop
    shadowed = _rows(data, "SELECT r.inspection_id, i.result_id, r.version, r.verdict, i.verdict, r.agrees, r.differing, "
                           "r.ts_unix, i.ts_unix FROM shadow_results r JOIN inspections i ON i.id = r.inspection_id "
                           "ORDER BY r.inspection_id")  # fmt: skip
    assert len(shadowed) == 3  # ended by its parts: the 4th and 5th part were not shadowed
    for _, result_id, version, shadow_verdict, verdict, agrees, differing, shadow_at, logged_at in shadowed:
        assert version == candidate
        assert verdict == "PASS" and shadow_verdict == "FAIL" and agrees == 0  # the swapped answer tokens
        assert differing == "verdict, label"
        assert logged_at < valid_at[result_id] < shadow_at  # row committed, PLC signalled, then the shadow
    checks = _rows(
        data, "SELECT name, status, agrees FROM shadow_checks WHERE inspection_id = ? ORDER BY idx", [shadowed[0][0]]
    )
    assert [(n, a) for n, _, a in checks] == [("surface", 1), ("label", 0)]
    sampled = _rows(data, "SELECT review_reason, image_path FROM inspections WHERE id IN (?, ?, ?) ORDER BY id",
                    [r[0] for r in shadowed])  # fmt: skip
    assert all(reason == "shadow_disagreement: verdict, label" and image for reason, image in sampled[:2])
    assert sampled[2] == (None, None)  # the third disagreement: over review sampling's cap of 2 an hour
    assert status["review_sampling"]["capped"] == 1
    others = _rows(data, "SELECT review_reason, image_path FROM inspections WHERE id NOT IN (?, ?, ?)",
                   [r[0] for r in shadowed])  # fmt: skip
    assert others == [(None, None), (None, None)]  # passes not sampled keep no frame (save_pass_every: 0)
    run = _rows(data, "SELECT version, production, end_reason, shadowed, disagreements, started_by FROM shadow_runs")
    assert run == [(candidate, production, "3 parts shadowed", 3, 3, "qa-lead")]
    assert [(e.state, e.reason) for e in events] == [("running", "qa-lead"), ("ended", "3 parts shadowed")]
    assert status["shadow"]["state"] == "ended" and status["shadow"]["last"]["counts"]["shadowed"] == 3
    published = status_payload(Topics("edge-inspect", "plant", "l1", "test-station"), True, time.time(), status)
    assert published["shadow"]["last"]["reason"] == "3 parts shadowed"  # the fleet status carries it


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _stop_sent(pid: int) -> bool:
    """Stopped, or SIGSTOP pending: a SCHED_IDLE process on a busy machine may get a core to enter
    the stopped state only later, and runs none of its own code before it does."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    pending = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    return fields["State"].strip().startswith("T") or bool(pending & (1 << (signal.SIGSTOP - 1)))


def test_the_shadow_process_is_stopped_while_production_inspects(tmp_path):
    config, _, _ = _station(tmp_path, plc={"enabled": False})

    async def scenario(station):
        request_start(station.shadow.models, "candidate", "qa", 0, 1)
        await station.shadow.check()
        pid = station.shadow.run.process.pid
        assert _process_state(pid) != "T"
        inspection = asyncio.create_task(station.inspect(1))
        await async_wait_until(lambda: station.inspecting, 5, "the inspection under way", poll_s=0.001)
        stopped_while = _stop_sent(pid)
        await inspection
        return stopped_while, _stop_sent(pid)

    stopped_while, after = asyncio.run(run_station(config, scenario))
    assert stopped_while and not after  # SIGSTOP while production inspects, SIGCONT once the result is out


def test_a_busy_line_skips_parts_and_counts_them(tmp_path):
    config, _, _ = _station(tmp_path, plc={"enabled": False})

    async def scenario(station):
        request_start(station.shadow.models, "candidate", "qa", 0, 1)
        await station.shadow.check()
        run = station.shadow.run
        # the next trigger is accepted before the result goes out (a PLC trigger: held until result_out)
        await station.inspect(1, part_id="held", trigger="plc", result_id=77)
        busy = asyncio.create_task(station.between_inspections(time.sleep, 0.3))
        await async_wait_until(lambda: station.inspecting, 5, "the next inspection under way")
        station.result_out(77)
        await busy
        assert run.counts["skipped_line"] == 1 and run.handed == 0
        # parts back to back, faster than the shadow judges: with max_waiting 0 the ones it is busy for are skipped
        for i in range(6):
            await station.inspect(1, part_id=f"B{i}")
        await async_wait_until(lambda: run.outstanding == 0, 60, "the shadow's last frame")
        counts = dict(run.counts)
        return counts, run.handed

    counts, handed = asyncio.run(run_station(config, scenario))
    assert counts["skipped_shadow"] >= 1
    assert counts["shadowed"] == handed and handed + counts["skipped_shadow"] == 6
    assert _rows(tmp_path / "data", "SELECT skipped_line FROM shadow_runs") == [(1,)]


def test_a_restart_resumes_the_run_and_a_stop_request_ends_it(tmp_path):
    config, _, candidate = _station(tmp_path, plc={"enabled": False})

    async def first(station):
        request_start(station.shadow.models, "candidate", "qa", 50, 0)
        await station.shadow.check()
        await station.inspect(1)
        await async_wait_until(lambda: station.shadow.run.counts["shadowed"] == 1, 60)
        return station.shadow.run.id

    async def second(station):
        run = station.shadow.run
        assert station.shadow.state == "running" and run.counts["shadowed"] == 1  # resumed where it was
        await station.inspect(1)
        await async_wait_until(lambda: run.counts["shadowed"] == 2, 60)
        request_stop(station.shadow.models, "integrator")
        await station.shadow.check()
        return run.id, station.shadow.state, station.shadow.ended["reason"]

    run_id = asyncio.run(run_station(config, first))
    again, state, reason = asyncio.run(run_station(config, second))
    assert again == run_id and state == "ended" and reason == "stopped by integrator"
    assert _rows(tmp_path / "data", "SELECT version, shadowed, end_reason FROM shadow_runs") == [
        (candidate, 2, "stopped by integrator")
    ]


def test_the_config_starts_a_shadow_once_per_version_and_hours_end_it(tmp_path):
    shadow = {"auto": True, "parts": 0, "hours": 0.001, "on_restart": "end"}  # 3.6 s
    config, _, candidate = _station(tmp_path, plc={"enabled": False}, model={"shadow": shadow})
    events: list[ShadowChanged] = []

    async def first(station):
        station.events.subscribe(lambda e: events.append(e) if isinstance(e, ShadowChanged) else None)
        await _ended(station)  # started by the station's own check at start, ended by it too
        return station.shadow.ended["reason"]

    async def second(station):
        await station.shadow.check()
        return station.shadow.state  # that version was shadowed before: not again

    assert asyncio.run(run_station(config, first)) == "0.001 hours passed"
    assert [(e.state, e.reason) for e in events] == [
        ("running", "config (model.shadow.auto)"),
        ("ended", "0.001 hours passed"),
    ]
    assert asyncio.run(run_station(config, second)) == "ended"
    assert _rows(tmp_path / "data", "SELECT version, started_by, end_reason FROM shadow_runs") == [
        (candidate, "config (model.shadow.auto)", "0.001 hours passed")
    ]


def test_parts_production_s_guard_flagged_are_logged_but_left_out_of_agreement(tmp_path):
    """A covered lens: production's unfamiliar-frame guard turns the part to ERROR, the shadow (no guard)
    answers as a model does. Those parts count as unfamiliar, not as disagreements; normal parts compare."""
    import cv2

    from edge_inspect.camera.sources import SyntheticSource
    from edge_inspect.cli import main
    from edge_inspect.sim.foreign import covered

    store_with_candidate(tmp_path / "data", tmp_path / "candidate", swap_yes_no=False)  # answers as production
    source = SyntheticSource(seed=7, defect_rate=0.0)
    normal, line = tmp_path / "normal", tmp_path / "line"
    normal.mkdir()
    line.mkdir()
    for i in range(30):
        cv2.imwrite(str(normal / f"frame-{i:02d}.png"), source.read())
    for i in range(4):  # the line: normal, covered, normal, covered
        frame = source.read()
        cv2.imwrite(str(line / f"frame-{i}.png"), covered(i, frame, "black") if i % 2 else frame)
    config = write_station(
        tmp_path, Path("production"), model={"max_new_tokens": 24}, recipes=RECIPE, plc={"enabled": False},
        camera={"source": "folder", "path": str(line)}, storage={"save_pass_every": 0},
    )  # fmt: skip
    assert main(["model", "reference", "--config", str(config), "--folder", str(normal), "--frames", "30"]) == 0

    async def scenario(station):
        request_start(station.shadow.models, "candidate", "qa", 0, 1)
        await station.shadow.check()
        run = station.shadow.run
        verdicts = []
        for _ in range(4):
            rec, _ = await station.inspect(1)
            verdicts.append((rec.verdict.name, rec.unfamiliar))
            await async_wait_until(lambda: run.outstanding == 0, 60, "the shadow's verdict")
        return verdicts, station.status()["shadow"]

    verdicts, now = asyncio.run(run_station(config, scenario))
    assert [u for _, u in verdicts] == [False, True, False, True]
    assert verdicts[1][0] == verdicts[3][0] == "ERROR"
    assert (now["shadowed"], now["unfamiliar"], now["disagreements"], now["agreement"]) == (4, 2, 0, 1.0)
    rows = _rows(
        tmp_path / "data",
        "SELECT verdict, agrees, verdict_agrees, differing FROM shadow_results ORDER BY inspection_id",
    )
    assert [r[1] for r in rows] == [1, None, 1, None] and rows[1][0] != "ERROR"  # the shadow's own answer, kept
    assert _rows(tmp_path / "data", "SELECT count(*) FROM inspections WHERE review_reason LIKE 'shadow%'") == [(0,)]
    from edge_inspect.commands.shadow_command import status

    run = status(tmp_path / "data", None)["run"]
    assert (run["judged"], run["unfamiliar"], run["agreement"], run["disagreement_list"]) == (2, 2, 1.0, [])
    assert [(c["name"], c["judged"], c["agree"]) for c in run["checks"]] == [("surface", 2, 2), ("label", 2, 2)]
