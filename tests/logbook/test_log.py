"""The log package: ids never reused, retention of dispositions and audit rows, migrations from
release 0.1, one transaction per inspection and per disposition."""

import shutil
import sqlite3
import time

import pytest

from edge_inspect.logbook import Store, StoreError, review
from edge_inspect.logbook.schema import LATEST
from edge_inspect.verdict import Verdict

from ..support.paths import TEST_DATA
from ..support.records import FRAME
from ..support.records import record as _record

RELEASE_0_1_LOG = TEST_DATA / "log-0.1.db"  # written by release 0.1's store and review


def test_retention_never_hands_an_old_disposition_to_a_new_inspection(tmp_path):
    store = Store(tmp_path, save_pass_every=0, retention_days=1)
    first = store.record(_record(1, Verdict.FAIL), FRAME)
    store.record(_record(2, Verdict.PASS), None)
    review.set_disposition(store, first, "false_reject", "qa1", "old part")
    assert store.enforce_retention(now=time.time() + 2 * 86400)["deleted"] == 2

    new = store.record(_record(3, Verdict.FAIL), FRAME)
    assert new > first + 1  # SQLite would hand out id 1 again without AUTOINCREMENT
    row = review.get_inspection(store, new)
    assert row["disposition"] is None and row["audit"] == []
    assert store.conn.execute("select count(*) from dispositions").fetchone()[0] == 0
    kept = [
        dict(zip(("action", "inspection_id"), r, strict=True))
        for r in store.conn.execute("select action, inspection_id from audit order by id")
    ]
    assert kept == [{"action": "disposition", "inspection_id": first}, {"action": "retention", "inspection_id": None}]


def test_log_from_release_0_1_opens_and_migrates(tmp_path):
    shutil.copy(RELEASE_0_1_LOG, tmp_path / "inspections.db")
    assert sqlite3.connect(tmp_path / "inspections.db").execute("pragma user_version").fetchone()[0] == 0
    store = Store(tmp_path, save_pass_every=0, retention_days=1)
    assert store.conn.execute("pragma user_version").fetchone()[0] == LATEST
    assert store.count() == 5
    old = review.get_inspection(store, 5)
    assert old["part_id"] == "P0005" and old["disposition"]["comment"] == "old part's comment"
    assert [c["name"] for c in old["checks"]] == ["scratches"] and old["checks"][0]["points"] == [[0.5, 0.5]]
    assert [a["action"] for a in old["audit"]] == ["disposition"]
    assert store.record(_record(6, Verdict.PASS), None) == 6

    store.enforce_retention(now=time.time() + 2 * 86400)
    assert store.record(_record(7, Verdict.PASS), None) == 7
    store.close()
    again = Store(tmp_path)  # reopening runs no migration twice
    assert again.count() == 1


def test_a_log_from_a_newer_release_is_refused_by_name(tmp_path):
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "inspections.db")
    conn.execute("pragma user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"inspections\.db: log schema version 99 is newer"):
        Store(tmp_path)


def _commits(store: Store, action) -> list[str]:
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        store.conn.set_trace_callback(None)
    return [s for s in statements if s.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK")]


def test_one_transaction_per_inspection_and_per_disposition(tmp_path):
    store = Store(tmp_path, save_pass_every=1)
    ids = []
    assert _commits(store, lambda: ids.append(store.record(_record(1, Verdict.FAIL), FRAME))) == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert _commits(store, lambda: review.set_disposition(store, ids[0], "confirmed_defect", "qa1", "ok")) == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    row = review.get_inspection(store, ids[0])
    assert len(row["checks"]) == 2 and row["checks"][0]["points"] == [[0.5, 0.5]] and len(row["audit"]) == 1
    assert (tmp_path / row["image_path"]).is_file() and not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_leaves_no_partial_inspection(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    store.conn.execute("create trigger no_points before insert on points begin select raise(abort, 'disk I/O'); end")
    with pytest.raises(StoreError):
        store.record(_record(1, Verdict.FAIL), None)
    assert store.conn.execute("select count(*) from inspections").fetchone()[0] == 0
    assert store.conn.execute("select count(*) from checks").fetchone()[0] == 0
