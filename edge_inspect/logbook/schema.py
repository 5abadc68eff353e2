"""The log's schema and its migrations, numbered by SQLite's ``PRAGMA user_version``.

Each migration runs once, in its own transaction, in order. A log written by any earlier release
opens: release 0.1 created the tables without a version (user_version 0), which migration 1
accepts as they are. Never edit a migration that has shipped; add the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

INSPECTION_COLUMNS = (
    "result_id INTEGER, ts TEXT, ts_unix FLOAT, station TEXT, recipe INTEGER, recipe_name TEXT, part_id TEXT, "
    "trigger TEXT, verdict TEXT, error TEXT, defect_count INTEGER, failed_checks INTEGER, grab_ms FLOAT, "
    "preprocess_ms FLOAT, vision_ms FLOAT, prefill_ms FLOAT, decode_ms FLOAT, inspect_ms FLOAT, cycle_ms FLOAT, "
    "model_sha256 TEXT, config_sha256 TEXT, image_path TEXT, overlay_path TEXT"
)
_INSPECTION_NAMES = ", ".join(c.split()[0] for c in INSPECTION_COLUMNS.split(", "))


def _v1_tables(db: sqlite3.Connection) -> None:
    """The tables of release 0.1 (created there by sqlite-utils and web/review.py)."""
    db.execute(f"CREATE TABLE IF NOT EXISTS inspections (id INTEGER PRIMARY KEY, {INSPECTION_COLUMNS})")
    db.execute("CREATE INDEX IF NOT EXISTS idx_inspections_ts_unix ON inspections (ts_unix)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_inspections_verdict ON inspections (verdict)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_inspections_result_id ON inspections (result_id)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS checks (inspection_id INTEGER REFERENCES inspections(id), idx INTEGER, "
        "name TEXT, kind TEXT, status TEXT, reason TEXT, counted INTEGER, answer TEXT, p_yes FLOAT, margin FLOAT, "
        "ms FLOAT, PRIMARY KEY (inspection_id, idx))"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS points (inspection_id INTEGER REFERENCES inspections(id), check_idx INTEGER, "
        "x FLOAT, y FLOAT)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS idx_points_inspection_id ON points (inspection_id)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS dispositions (inspection_id INTEGER PRIMARY KEY REFERENCES inspections(id), "
        "disposition TEXT, reviewer TEXT, comment TEXT, ts TEXT)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, ts TEXT, user TEXT, action TEXT, "
        "inspection_id INTEGER, detail TEXT)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS idx_audit_inspection_id ON audit (inspection_id)")


def _v2_ids_never_reused(db: sqlite3.Connection) -> None:
    """AUTOINCREMENT on inspections and audit: SQLite otherwise hands a deleted row's id to the next
    insert, and a new inspection would inherit an old part's disposition, audit trail and images."""
    db.execute(f"CREATE TABLE inspections_v2 (id INTEGER PRIMARY KEY AUTOINCREMENT, {INSPECTION_COLUMNS})")
    db.execute(f"INSERT INTO inspections_v2 (id, {_INSPECTION_NAMES}) SELECT id, {_INSPECTION_NAMES} FROM inspections")
    db.execute("DROP TABLE inspections")
    db.execute("ALTER TABLE inspections_v2 RENAME TO inspections")
    db.execute("CREATE INDEX idx_inspections_ts_unix ON inspections (ts_unix)")
    db.execute("CREATE INDEX idx_inspections_verdict ON inspections (verdict)")
    db.execute("CREATE INDEX idx_inspections_result_id ON inspections (result_id)")
    db.execute(
        "CREATE TABLE audit_v2 (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT, user TEXT, action TEXT, "
        "inspection_id INTEGER, detail TEXT)"
    )
    db.execute("INSERT INTO audit_v2 SELECT id, ts, user, action, inspection_id, detail FROM audit")
    db.execute("DROP TABLE audit")
    db.execute("ALTER TABLE audit_v2 RENAME TO audit")
    db.execute("CREATE INDEX idx_audit_inspection_id ON audit (inspection_id)")
    # Rows deleted before this migration may have had higher ids than any row left: the old
    # dispositions of such ids were orphaned by retention in 0.1; drop them so they cannot attach.
    db.execute("DELETE FROM dispositions WHERE inspection_id NOT IN (SELECT id FROM inspections)")


def _v3_review_indexes(db: sqlite3.Connection) -> None:
    """Indexes for the review pages on a large log (docs/log.md, "Queries at scale"): shift counters
    and hourly yield read (ts_unix, verdict) from the index alone; the defect Pareto finds failed
    checks by status, with inspection and name in the index. The old ts_unix index is a prefix of
    the new one and goes."""
    db.execute("CREATE INDEX idx_inspections_ts_verdict ON inspections (ts_unix, verdict)")
    db.execute("DROP INDEX IF EXISTS idx_inspections_ts_unix")
    db.execute("CREATE INDEX idx_checks_status ON checks (status, inspection_id, name)")


def _v4_alarms_and_corrections(db: sqlite3.Connection) -> None:
    """The alarm history (raised, cleared, acknowledged by whom) and reviewers' corrections of the
    model's points (for retraining)."""
    db.execute(
        "CREATE TABLE alarms (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT, message TEXT, raised_at FLOAT, "
        "cleared_at FLOAT, acknowledged_at FLOAT, acknowledged_by TEXT)"
    )
    db.execute("CREATE INDEX idx_alarms_code_open ON alarms (code, cleared_at)")
    db.execute(
        "CREATE TABLE corrections (id INTEGER PRIMARY KEY AUTOINCREMENT, inspection_id INTEGER REFERENCES "
        "inspections(id), check_idx INTEGER, x FLOAT, y FLOAT, action TEXT, reviewer TEXT, ts TEXT)"
    )
    db.execute("CREATE INDEX idx_corrections_inspection ON corrections (inspection_id)")


def _v5_points_in_mm(db: sqlite3.Connection) -> None:
    """Points also in millimetres on the working plane, when the camera is calibrated."""
    db.execute("ALTER TABLE points ADD COLUMN x_mm FLOAT")
    db.execute("ALTER TABLE points ADD COLUMN y_mm FLOAT")


def _v6_config_versions(db: sqlite3.Connection) -> None:
    """Every saved station config (text, hash, author, time, where it came from) so that a change
    can be diffed and rolled back; each inspection names its recipe's version, and a yes/no check
    its probability mass on the two answer tokens."""
    db.execute("ALTER TABLE inspections ADD COLUMN recipe_sha256 TEXT")
    db.execute("ALTER TABLE checks ADD COLUMN mass FLOAT")
    db.execute(
        "CREATE TABLE config_versions (id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL, ts TEXT, "
        "ts_unix FLOAT, author TEXT, source TEXT, comment TEXT, yaml TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX idx_config_versions_sha256 ON config_versions (sha256)")


def _v7_fleet_outbox(db: sqlite3.Connection) -> None:
    """The fleet outbox (docs/fleet.md): messages for the plant's MQTT broker, written in the same
    transaction as the inspection they carry and deleted when the collector confirms them."""
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, "
        "created FLOAT NOT NULL, payload TEXT NOT NULL)"
    )


def _v8_review_sampling(db: sqlite3.Connection) -> None:
    """Why review sampling put an inspection in the QA queue (docs/log.md), and an index over the
    sampled ones only: the queue is a handful of rows among millions."""
    db.execute("ALTER TABLE inspections ADD COLUMN review_reason TEXT")
    db.execute("CREATE INDEX idx_inspections_review ON inspections (id) WHERE review_reason IS NOT NULL")


def _v9_camera_frame(db: sqlite3.Connection) -> None:
    """The camera's frame id and timestamp of the frame inspected (GenICam cameras, docs/cameras.md);
    NULL for the other sources and for rows written before."""
    db.execute("ALTER TABLE inspections ADD COLUMN frame_id INTEGER")
    db.execute("ALTER TABLE inspections ADD COLUMN camera_ts_ns INTEGER")


def _v10_unfamiliar_score(db: sqlite3.Connection) -> None:
    """The unfamiliar-frame guard's score of the inspected frame (its most unfamiliar view) and the
    threshold it was judged against (docs/model-lifecycle.md); NULL where no reference was there."""
    db.execute("ALTER TABLE inspections ADD COLUMN unfamiliar_score FLOAT")
    db.execute("ALTER TABLE inspections ADD COLUMN unfamiliar_threshold FLOAT")


def _v11_shadow(db: sqlite3.Connection) -> None:
    """A candidate model's verdicts on live frames beside production's (docs/log.md, "Shadow"): each
    run of a shadow, and per shadowed inspection and version its verdict and per-check results."""
    db.execute(
        "CREATE TABLE shadow_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, version TEXT NOT NULL, production TEXT, "
        "started_at FLOAT NOT NULL, ended_at FLOAT, end_reason TEXT, parts_bound INTEGER, hours_bound FLOAT, "
        "started_by TEXT, request_seq INTEGER, shadowed INTEGER NOT NULL DEFAULT 0, skipped_line INTEGER NOT NULL "
        "DEFAULT 0, skipped_shadow INTEGER NOT NULL DEFAULT 0, disagreements INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "CREATE TABLE shadow_results (inspection_id INTEGER NOT NULL REFERENCES inspections(id), version TEXT NOT NULL, "
        "run_id INTEGER REFERENCES shadow_runs(id), ts TEXT, ts_unix FLOAT, verdict TEXT, error TEXT, "
        "verdict_agrees INTEGER, agrees INTEGER, differing TEXT, inspect_ms FLOAT, cpu_ms FLOAT, waited_ms FLOAT, "
        "PRIMARY KEY (inspection_id, version))"
    )
    db.execute("CREATE INDEX idx_shadow_results_run ON shadow_results (run_id, agrees, inspection_id)")
    db.execute(
        "CREATE TABLE shadow_checks (inspection_id INTEGER NOT NULL, version TEXT NOT NULL, idx INTEGER NOT NULL, "
        "name TEXT, kind TEXT, status TEXT, reason TEXT, counted INTEGER, answer TEXT, p_yes FLOAT, margin FLOAT, "
        "ms FLOAT, points TEXT, agrees INTEGER, PRIMARY KEY (inspection_id, version, idx))"
    )


def _v12_views(db: sqlite3.Connection) -> None:
    """Parts seen by several cameras (docs/cameras.md): each check's view (the camera whose frame it
    looked at; NULL before), and a row per view of a part seen by more than one camera with that
    view's frame id, timestamp, size, kept images and why it had no frame. A part seen by one camera
    has none: its inspections row says it all."""
    db.execute("ALTER TABLE checks ADD COLUMN view TEXT")
    db.execute(
        "CREATE TABLE inspection_views (inspection_id INTEGER NOT NULL REFERENCES inspections(id), "
        "view TEXT NOT NULL, idx INTEGER NOT NULL, frame_id INTEGER, camera_ts_ns INTEGER, width INTEGER, "
        "height INTEGER, grab_ms FLOAT, error TEXT, image_path TEXT, overlay_path TEXT, "
        "PRIMARY KEY (inspection_id, view))"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_tables,
    _v2_ids_never_reused,
    _v3_review_indexes,
    _v4_alarms_and_corrections,
    _v5_points_in_mm,
    _v6_config_versions,
    _v7_fleet_outbox,
    _v8_review_sampling,
    _v9_camera_frame,
    _v10_unfamiliar_score,
    _v11_shadow,
    _v12_views,
]
LATEST = len(MIGRATIONS)


class SchemaError(Exception):
    """The log was written by a newer release than this one."""


def migrate(db: sqlite3.Connection) -> tuple[int, int]:
    """Bring the log to the latest schema; returns (version before, version after).

    ``db`` must be in autocommit mode (isolation_level=None): each step runs in BEGIN IMMEDIATE.
    """
    before = db.execute("PRAGMA user_version").fetchone()[0]
    if before > LATEST:
        raise SchemaError(
            f"log schema version {before} is newer than this release knows ({LATEST}); upgrade edge-inspect"
        )
    for version in range(before + 1, LATEST + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled it back itself (a full disk)
                db.execute("ROLLBACK")
            raise
    return before, LATEST
