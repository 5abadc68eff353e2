"""The central QA database on PostgreSQL: schema and migrations (docs/fleet.md).

Versions are rows of ``fleet_schema``; each migration runs once, in its own transaction, under an
advisory lock so that two collectors starting together do not both migrate. Never edit a
migration that has shipped; add the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

LOCK_KEY = 0x6564676549  # pg_advisory_xact_lock key of the migrations ("edgeI")

_V1 = [
    """CREATE TABLE stations (
        station_key text PRIMARY KEY, site text NOT NULL, line text NOT NULL, station text NOT NULL,
        online boolean NOT NULL DEFAULT false, last_seen timestamptz, status jsonb, status_at timestamptz)""",
    """CREATE TABLE inspections (
        msg_id uuid PRIMARY KEY, station_key text NOT NULL REFERENCES stations(station_key),
        inspection_id bigint NOT NULL, result_id bigint, ts timestamptz NOT NULL, recipe integer,
        recipe_name text, recipe_sha256 text, part_id text, trigger text, verdict text NOT NULL, error text,
        defect_count integer, failed_checks bigint, timings_ms jsonb, model_sha256 text, config_sha256 text,
        image_path text, overlay_path text, image_url text, overlay_url text,
        image_sha256 text, overlay_sha256 text, image_state text NOT NULL DEFAULT 'none',
        image_attempts integer NOT NULL DEFAULT 0, image_next_try timestamptz, image_error text,
        received_at timestamptz NOT NULL DEFAULT now(), ingest_seq bigserial)""",
    "CREATE INDEX inspections_ts ON inspections (ts DESC)",
    "CREATE INDEX inspections_station_ts ON inspections (station_key, ts DESC)",
    "CREATE INDEX inspections_verdict_ts ON inspections (verdict, ts DESC)",
    "CREATE INDEX inspections_station_local ON inspections (station_key, inspection_id)",
    "CREATE INDEX inspections_image_pending ON inspections (image_next_try) WHERE image_state = 'pending'",
    """CREATE TABLE checks (
        msg_id uuid NOT NULL REFERENCES inspections(msg_id) ON DELETE CASCADE, idx integer NOT NULL,
        name text, kind text, status text, reason text, counted integer, answer text, p_yes double precision,
        margin double precision, mass double precision, ms double precision, points jsonb,
        PRIMARY KEY (msg_id, idx))""",
    "CREATE INDEX checks_status_name ON checks (status, name)",
    """CREATE TABLE alarm_events (
        msg_id uuid PRIMARY KEY, station_key text NOT NULL REFERENCES stations(station_key), event text NOT NULL,
        code text NOT NULL, message text, username text, at timestamptz NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX alarm_events_station_code ON alarm_events (station_key, code, at DESC)",
]


def _v1(conn: psycopg.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


def _v2(conn: psycopg.Connection) -> None:
    """A station's inspection is stored once, whatever its message id (a message made anew for the same
    inspection would otherwise add a second row): (station_key, inspection_id) becomes unique. Rows
    already stored twice keep the first stored (lowest ingest_seq); the others go with their checks."""
    conn.execute(
        "DELETE FROM inspections i USING inspections keep WHERE keep.station_key = i.station_key AND "
        "keep.inspection_id = i.inspection_id AND keep.ingest_seq < i.ingest_seq"
    )
    conn.execute("DROP INDEX inspections_station_local")
    conn.execute("CREATE UNIQUE INDEX inspections_station_local ON inspections (station_key, inspection_id)")


def _v3(conn: psycopg.Connection) -> None:
    """Messages the collector cannot store (bad JSON, wrong types, unknown version, out of range, oversize),
    kept with the reason and their raw bytes instead of stopping the collection (docs/fleet.md)."""
    conn.execute("""CREATE TABLE dead_letters (
        id bigserial PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT now(), topic text NOT NULL,
        station_key text, reason text NOT NULL, raw bytea NOT NULL, size integer NOT NULL)""")
    conn.execute("CREATE INDEX dead_letters_received ON dead_letters (received_at DESC)")


def _v4(conn: psycopg.Connection) -> None:
    """QA's review from the stations (docs/fleet.md, "review"): per inspection the latest disposition
    (a later one, by the station's ``review_seq``, replaces it; an earlier one arriving late does not),
    every correction of points once (keyed by its row id in the station's log), and the inspection's
    check definitions as its recipe had them. Keyed by (station_key, inspection_id), as the station's
    log is: the inspection's own row may arrive later or never."""
    conn.execute("""CREATE TABLE review_dispositions (
        station_key text NOT NULL REFERENCES stations(station_key), inspection_id bigint NOT NULL,
        disposition text NOT NULL, comment text, reviewer text, reviewed_at timestamptz NOT NULL,
        review_seq bigint NOT NULL, msg_id uuid NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (station_key, inspection_id))""")
    conn.execute("""CREATE TABLE review_corrections (
        station_key text NOT NULL REFERENCES stations(station_key), correction_id bigint NOT NULL,
        inspection_id bigint NOT NULL, check_idx integer NOT NULL, x double precision NOT NULL,
        y double precision NOT NULL, action text NOT NULL, reviewer text, reviewed_at timestamptz NOT NULL,
        review_seq bigint NOT NULL, msg_id uuid NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (station_key, correction_id))""")
    conn.execute(
        "CREATE INDEX review_corrections_inspection ON review_corrections (station_key, inspection_id, correction_id)"
    )
    conn.execute("""CREATE TABLE review_checks (
        station_key text NOT NULL REFERENCES stations(station_key), inspection_id bigint NOT NULL,
        definitions jsonb NOT NULL, review_seq bigint NOT NULL, PRIMARY KEY (station_key, inspection_id))""")


MIGRATIONS: list[Callable[[psycopg.Connection], None]] = [_v1, _v2, _v3, _v4]
LATEST = len(MIGRATIONS)


class SchemaError(Exception):
    """The database was migrated by a newer release."""


def migrate(conn: psycopg.Connection) -> tuple[int, int]:
    """Bring the database to the latest schema; returns (version before, version after)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fleet_schema (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        before = scalar(conn, "SELECT coalesce(max(version), 0) FROM fleet_schema")
    if before > LATEST:
        raise SchemaError(
            f"database schema version {before} is newer than this release knows ({LATEST}); upgrade edge-inspect"
        )
    for version in range(before + 1, LATEST + 1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
            if conn.execute("SELECT 1 FROM fleet_schema WHERE version = %s", [version]).fetchone():
                continue  # another collector got there first
            MIGRATIONS[version - 1](conn)
            conn.execute("INSERT INTO fleet_schema (version) VALUES (%s)", [version])
    return before, LATEST


def scalar(conn: psycopg.Connection | psycopg.Cursor, sql: str, args: Sequence[Any] = ()) -> Any:
    """The one value of a query that always gives one row (an aggregate)."""
    row = conn.execute(sql, args).fetchone()
    if row is None:
        raise psycopg.DataError(f"no row from {sql!r}")
    return row[0]


def version(conn: psycopg.Connection) -> int:
    if not scalar(conn, "SELECT to_regclass('fleet_schema') IS NOT NULL"):
        return 0
    return scalar(conn, "SELECT coalesce(max(version), 0) FROM fleet_schema")
