"""Schema 8: the camera's frame id and timestamp of the frame inspected, in the log's inspections
table; a log of schema 7 migrates with its rows kept (NULL there)."""

from __future__ import annotations

import dataclasses
import sqlite3

from edge_inspect.logbook import Store
from edge_inspect.logbook.schema import LATEST, MIGRATIONS
from edge_inspect.verdict import Verdict

from ..support.records import record


def test_a_schema_7_log_migrates_and_keeps_its_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "inspections.db", isolation_level=None)
    for migration in MIGRATIONS[:7]:
        migration(db)
    db.execute("PRAGMA user_version = 7")
    db.execute("INSERT INTO inspections (result_id, verdict) VALUES (1, 'PASS')")
    db.close()
    store = Store(tmp_path, save_pass_every=0)
    assert LATEST == 8 and store.conn.execute("pragma user_version").fetchone()[0] == 8
    new = store.record(
        dataclasses.replace(record(2, Verdict.PASS), frame_id=65535, camera_ts_ns=1_796_655_864_829_935_000), None
    )
    rows = store.conn.execute("select id, result_id, frame_id, camera_ts_ns from inspections order by id").fetchall()
    assert [tuple(r) for r in rows] == [(1, 1, None, None), (new, 2, 65535, 1_796_655_864_829_935_000)]
    store.close()
