"""kill -9 timed on the log's write-ahead log growing: after 20 kills, no inspection without its
checks or points, no row naming an image that is not on disk, and SQLite's integrity check passes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from ..support.stations import write_station


def test_kill_9_during_log_writes_never_leaves_half_an_inspection(tmp_path, tiny_bundle):
    config = write_station(
        tmp_path,
        tiny_bundle,
        plc={"enabled": False},
        model={"bundle": str(tiny_bundle), "max_new_tokens": 2},
        triggers={"plc": False, "interval_s": 0.01},
        storage={"dir": str(tmp_path / "data"), "save_pass_every": 1},
    )
    wal = tmp_path / "data" / "inspections.db-wal"
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_inspect.cli", "run", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            size = wal.stat().st_size if wal.exists() else -1
            while time.monotonic() < deadline and proc.poll() is None:
                now = wal.stat().st_size if wal.exists() else -1
                if now > size and size >= 0:  # a transaction is being written (or was just committed)
                    break
                size = now
                time.sleep(0.0005)
            assert proc.poll() is None, "the daemon exited by itself"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kills += 1
    with sqlite3.connect(tmp_path / "data" / "inspections.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        total = db.execute("select count(*) from inspections").fetchone()[0]
        without_checks = db.execute(
            "select count(*) from inspections i where not exists (select 1 from checks c where c.inspection_id = i.id)"
        ).fetchone()[0]
        orphans = db.execute(
            "select count(*) from checks c where not exists (select 1 from inspections i where i.id = c.inspection_id)"
        ).fetchone()[0]
        images = [r[0] for r in db.execute("select image_path from inspections where image_path is not null")]
    assert kills == 20 and total > 0  # some kills land on the start-up writes (migrations)
    assert without_checks == 0 and orphans == 0
    missing = [p for p in images if not (tmp_path / "data" / p).is_file()]
    assert not missing, missing
    print(f"{kills} kills, {total} inspections in the log, each with its checks and images")
