"""The SQLite log: durability settings, images kept by verdict, retention, disk full."""

import sqlite3
import time

from edge_inspect.logbook import Store
from edge_inspect.verdict import Verdict

from ..support.records import FRAME
from ..support.records import record as _record
from ..support.wait import async_wait_until


def test_durability_pragmas_and_rows(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    row_id = store.record(_record(7, Verdict.FAIL), FRAME)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    con = sqlite3.connect(tmp_path / "inspections.db")  # a plain SQLite file any tool can open
    row = con.execute(
        "select result_id, verdict, defect_count, failed_checks, part_id, image_path, overlay_path "
        "from inspections where id = ?",
        [row_id],
    ).fetchone()
    assert row[:5] == (7, "FAIL", 1, 1, "P7") and row[5].endswith(".jpg") and row[6].endswith("_overlay.jpg")
    assert con.execute("select count(*) from checks where inspection_id = ?", [row_id]).fetchone()[0] == 2
    assert con.execute("select x, y from points where inspection_id = ?", [row_id]).fetchall() == [(0.5, 0.5)]
    assert (tmp_path / row[5]).is_file() and (tmp_path / row[6]).is_file()


def test_images_for_every_fail_and_error_and_every_nth_pass(tmp_path):
    store = Store(tmp_path, save_pass_every=3)
    for i in range(6):
        store.record(_record(i, Verdict.PASS), FRAME)
    store.record(_record(10, Verdict.FAIL), FRAME)
    store.record(_record(11, Verdict.ERROR), FRAME)
    kept = {r["result_id"] for r in store.db.query("select result_id from inspections where image_path is not null")}
    assert kept == {2, 5, 10, 11}


def test_retention_by_age_and_by_budget(tmp_path):
    store = Store(tmp_path, save_pass_every=1, retention_days=1, max_disk_mb=1000)
    for i in range(4):
        store.record(_record(i, Verdict.FAIL), FRAME)
    old = time.time() - 3 * 86400
    store.db.execute("update inspections set ts_unix = ? where result_id in (0, 1)", [old])
    store.db.conn.commit()
    assert store.enforce_retention()["deleted"] == 2
    assert {r["result_id"] for r in store.db.query("select result_id from inspections")} == {2, 3}
    assert store.db.execute("select count(*) from checks").fetchone()[0] == 4
    budget_mb = store.image_bytes() / 2 / 1e6
    store.close()
    store = Store(tmp_path, save_pass_every=1, retention_days=1, max_disk_mb=budget_mb)  # now over budget
    result = store.enforce_retention()  # the oldest images go, rows stay
    assert result["images_trimmed"] >= 1 and store.image_bytes() <= budget_mb * 1e6
    assert store.db.execute("select count(*) from inspections").fetchone()[0] == 2


def test_low_disk_drops_images_first_and_keeps_the_row(tmp_path):
    disk = {"free": 10**12}
    store = Store(tmp_path, save_pass_every=1, min_free_mb=200, free_bytes=lambda folder: disk["free"])
    store.record(_record(1, Verdict.FAIL), FRAME)
    disk["free"] = 199 * 10**6  # the disk now almost full
    row_id = store.record(_record(2, Verdict.FAIL), FRAME)
    assert store.low_space and store.images_dropped == 1 and store.count() == 2
    row = store.db.execute("select image_path, overlay_path from inspections where id = ?", [row_id]).fetchone()
    assert row == (None, None)
    disk["free"] = 10**12  # space again
    store.record(_record(3, Verdict.FAIL), FRAME)
    assert not store.low_space


def test_station_keeps_signalling_with_ready_up_when_the_disk_is_low(tmp_path, tiny_bundle):
    """Low disk: the PLC gets every result, `ready` stays up, the warning bit and an alarm tell."""
    import asyncio

    from ..support.stations import run_station_with_plc, write_station

    path = write_station(tmp_path, tiny_bundle, storage={"min_free_mb": 1e9})  # more than this disk has free

    async def scenario(station, plc):
        results = [await plc.cycle(5 + i, 1, "low") for i in range(3)]  # each cycle waits for `ready`
        # ready returns once the PLC has dropped trigger and ack
        await async_wait_until(lambda: station.handshake.outputs["ready"], 20, "ready")
        return results, station.alarms.active("disk_low"), dict(station.handshake.outputs), station.store.count()

    results, disk_low, outputs, logged = asyncio.run(run_station_with_plc(path, scenario))
    assert [r.result_id for r in results] == [5, 6, 7] and all(r.error_code != 4 for r in results)
    assert disk_low and outputs["warning"] and outputs["ready"] and logged == 3


def test_a_log_the_station_cannot_open_is_one_line_and_exit_2_at_start(tmp_path):
    """A log written by a newer release, and a file in its place that is no SQLite database: the station
    does not start, and says why in one line (exit 2), as for any start-up the machine refuses."""
    import subprocess
    import sys

    from ..support.paths import DEMO_STUDENT
    from ..support.stations import write_station

    config = write_station(tmp_path, DEMO_STUDENT, plc={"enabled": False}, storage={"dir": str(tmp_path / "data")})
    db = tmp_path / "data" / "inspections.db"
    db.parent.mkdir(parents=True)
    for damage, expected in (
        (
            lambda: sqlite3.connect(db).execute("PRAGMA user_version = 999").connection.close(),
            "newer than this release",
        ),
        (lambda: db.write_bytes(b"not a database, a text file in its place\n" * 100), "not a database"),
    ):
        db.unlink(missing_ok=True)
        damage()
        before = db.read_bytes()
        done = subprocess.run(
            [sys.executable, "-m", "edge_inspect.cli", "run", str(config)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert "Traceback" not in done.stderr and expected in lines[-1] and str(db) in lines[-1], done.stderr
        if expected == "not a database":
            assert db.read_bytes() == before  # the file in its place is left as it was
        else:  # the newer log keeps its version: nothing migrated it down
            assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 999


def test_a_full_log_that_sqlite_rolls_back_itself_says_full_and_keeps_the_result(tmp_path):
    """A full disk mid-transaction: SQLite rolls the transaction back on its own. The store must not try
    a second rollback (whose "no transaction is active" hid the cause, so the station raised log_error
    instead of disk_full), must keep the result in memory, and must write it once there is room again.
    The log's size limit (max_page_count) stands in for the disk; a 2-page cache makes SQLite spill
    mid-statement, as it does under its memory limit."""
    import pytest

    from edge_inspect.logbook.store import StoreError

    store = Store(tmp_path)
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute("PRAGMA cache_size=2")
    store.conn.execute(f"PRAGMA max_page_count={pages + 2}")
    with pytest.raises(StoreError) as full:
        for i in range(50):  # records with images' paths and checks until the log has no room
            store.record(_record(i, Verdict.FAIL), FRAME)
    assert full.value.disk_full and "full" in str(full.value), full.value
    assert not store.conn.in_transaction and store.pending >= 1
    store.conn.execute("PRAGMA max_page_count=1000000")
    store.flush_pending()
    assert store.pending == 0
    logged = [r[0] for r in store.conn.execute("select result_id from inspections order by id")]
    assert logged == sorted(set(logged)) and logged[-1] == max(logged)
