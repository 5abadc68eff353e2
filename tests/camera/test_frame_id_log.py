"""Schema 9: the camera's frame id and timestamp of the frame inspected, in the log's inspections
table; a log of schema 8 migrates with its rows kept (NULL there)."""

from __future__ import annotations

import dataclasses
import sqlite3

from edge_inspect.logbook import Store
from edge_inspect.logbook.schema import LATEST, MIGRATIONS, _v9_camera_frame
from edge_inspect.verdict import Verdict

from ..support.records import record


def test_a_schema_8_log_migrates_and_keeps_its_rows(tmp_path):
    version = MIGRATIONS.index(_v9_camera_frame) + 1
    assert version == 9
    db = sqlite3.connect(tmp_path / "inspections.db", isolation_level=None)
    for migration in MIGRATIONS[: version - 1]:
        migration(db)
    db.execute(f"PRAGMA user_version = {version - 1}")
    db.execute("INSERT INTO inspections (result_id, verdict) VALUES (1, 'PASS')")
    db.close()
    store = Store(tmp_path, save_pass_every=0)
    assert store.conn.execute("pragma user_version").fetchone()[0] == LATEST >= version
    new = store.record(
        dataclasses.replace(record(2, Verdict.PASS), frame_id=65535, camera_ts_ns=1_796_655_864_829_935_000), None
    )
    rows = store.conn.execute("select id, result_id, frame_id, camera_ts_ns from inspections order by id").fetchall()
    assert [tuple(r) for r in rows] == [(1, 1, None, None), (new, 2, 65535, 1_796_655_864_829_935_000)]
    store.close()
