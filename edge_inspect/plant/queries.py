"""The plant web's reads of the collector's PostgreSQL database: a small connection pool, the review's
filters as SQL, and the queries the endpoints run in worker threads (the stations with today's yield
and their alarms, a review page, one inspection, the dead letters, the CSV export in keyset-paged
pieces)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg
from psycopg.rows import dict_row

from ..http.filters import common_filters
from ..http.spreadsheet import csv_text

PER_PAGE = 50


class Pool:
    """A few autocommit connections shared by the request threads."""

    def __init__(self, dsn: str, size: int = 4):
        self.dsn, self.size = dsn, size
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    @contextmanager
    def conn(self):
        try:
            conn = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self.size
                self._made += make
            if make:
                try:
                    conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)
                except BaseException:
                    with self._lock:
                        self._made -= 1
                    raise
            else:
                conn = self._free.get(timeout=30)
        try:
            yield conn
        except psycopg.OperationalError:
            conn.close()
            with self._lock:
                self._made -= 1
            raise
        except BaseException:
            self._free.put(conn)
            raise
        else:
            self._free.put(conn)


@dataclass(frozen=True)
class Filters:
    """The station review's filters (http/filters.py: the same rules) and the station."""

    station: str | None = None
    since: float | None = None
    until: float | None = None
    verdict: str | None = None
    recipe: int | None = None
    check: str | None = None
    part_id: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_query(cls, q, tz) -> Filters:
        station = q.get("station")
        return cls(
            station=station.strip() if isinstance(station, str) and station.strip() else None,
            **{**common_filters(q, tz), "per_page": PER_PAGE},
        )

    def where(self) -> tuple[str, list]:
        sql: list[str] = ["true"]
        args: list[object] = []
        for column, value in (("i.station_key", self.station), ("i.verdict", self.verdict), ("i.recipe", self.recipe)):
            if value is not None:
                sql.append(f"{column} = %s")
                args.append(value)
        if self.part_id:
            sql.append("i.part_id ILIKE %s")
            escaped = self.part_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{escaped}%")
        if self.since is not None:
            sql.append("i.ts >= %s")
            args.append(datetime.fromtimestamp(self.since, timezone.utc))
        if self.until is not None:
            sql.append("i.ts < %s")
            args.append(datetime.fromtimestamp(self.until, timezone.utc))
        if self.check:
            sql.append(
                "EXISTS (SELECT 1 FROM checks c WHERE c.msg_id = i.msg_id AND c.name = %s AND c.status <> 'pass')"
            )
            args.append(self.check)
        return " AND ".join(sql), args


def stations(pool: Pool, tz) -> list[dict]:
    midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    with pool.conn() as conn:
        rows = conn.execute(
            "SELECT s.*, coalesce(y.total, 0) AS total_today, coalesce(y.passed, 0) AS passed_today FROM stations s "
            "LEFT JOIN (SELECT station_key, count(*) AS total, count(*) FILTER (WHERE verdict = 'PASS') AS passed "
            "FROM inspections WHERE ts >= %s GROUP BY station_key) y USING (station_key) ORDER BY s.station_key",
            [midnight],
        ).fetchall()
        alarms = conn.execute(
            "SELECT * FROM (SELECT DISTINCT ON (station_key, code) station_key, code, event, message, at "
            "FROM alarm_events WHERE event IN ('raised', 'cleared') ORDER BY station_key, code, at DESC) a "
            "WHERE event = 'raised' ORDER BY at"
        ).fetchall()
    for row in rows:
        listed = (row["status"] or {}).get("alarms")
        if isinstance(listed, list):  # the station's own alarm board, as of its latest status: the truth
            row["alarms"] = [
                {"code": a.get("code"), "message": a.get("message"), "at": _since(a.get("since"))}
                for a in listed
                if isinstance(a, dict) and a.get("active")
            ]
        else:  # no status with a list yet: the latest event per code
            row["alarms"] = [a for a in alarms if a["station_key"] == row["station_key"]]
        row["yield_today"] = row["passed_today"] / row["total_today"] if row["total_today"] else None
    return rows


def _since(unix) -> datetime | None:
    return datetime.fromtimestamp(unix, timezone.utc) if isinstance(unix, int | float) else None


def page(pool: Pool, f: Filters) -> tuple[list[dict], bool]:
    where, args = f.where()
    with pool.conn() as conn:
        rows = conn.execute(
            f"SELECT i.msg_id, i.station_key, i.inspection_id, i.result_id, i.ts, i.recipe, i.recipe_name, i.part_id, "
            f"i.verdict, i.defect_count, i.overlay_sha256 FROM inspections i WHERE {where} "
            f"ORDER BY i.ts DESC, i.ingest_seq DESC LIMIT %s OFFSET %s",
            [*args, PER_PAGE + 1, (f.page - 1) * PER_PAGE],
        ).fetchall()
    return rows[:PER_PAGE], len(rows) > PER_PAGE


def detail(pool: Pool, msg_id: str) -> dict | None:
    with pool.conn() as conn:
        row = conn.execute("SELECT * FROM inspections WHERE msg_id = %s", [msg_id]).fetchone()
        if row is not None:
            row["checks"] = conn.execute("SELECT * FROM checks WHERE msg_id = %s ORDER BY idx", [msg_id]).fetchall()
    return row


def dead_letters(pool: Pool, latest: int = 10) -> dict:
    """How many messages the collector kept as dead letters, and the latest few (without their bytes)."""
    with pool.conn() as conn:
        count = conn.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"]
        rows = conn.execute(
            "SELECT id, received_at, topic, station_key, reason, size FROM dead_letters ORDER BY id DESC LIMIT %s",
            [latest],
        ).fetchall()
    return {"count": count, "latest": rows}


def names(pool: Pool) -> tuple[list[str], list[str]]:
    with pool.conn() as conn:
        keys = [r["station_key"] for r in conn.execute("SELECT station_key FROM stations ORDER BY 1")]
        checks = [
            r["name"]
            for r in conn.execute(  # from the latest 5,000 inspections: bounded on any size
                "SELECT DISTINCT c.name FROM checks c JOIN (SELECT msg_id FROM inspections ORDER BY ts DESC LIMIT 5000) i "
                "USING (msg_id) WHERE c.status <> 'pass' ORDER BY 1 LIMIT 200"
            )
        ]
    return keys, checks


CSV_COLUMNS = (
    "station_key",
    "inspection_id",
    "result_id",
    "ts",
    "recipe",
    "recipe_name",
    "part_id",
    "trigger",
    "verdict",
    "error",
    "defect_count",
    "failed_checks",
    "model_sha256",
    "config_sha256",
    "image_sha256",
    "msg_id",
)


def csv_piece(pool: Pool, f: Filters, tz, after: tuple | None, size: int) -> tuple[str, tuple | None]:
    """Rows newest first by (ts, ingest_seq), keyset-paged: ``after`` is the last key of the previous piece."""
    where, args = f.where()
    if after is not None:
        where += " AND (i.ts, i.ingest_seq) < (%s, %s)"
        args = [*args, *after]
    with pool.conn() as conn:
        rows = conn.execute(
            f"SELECT i.*, i.ingest_seq AS k FROM inspections i WHERE {where} "
            f"ORDER BY i.ts DESC, i.ingest_seq DESC LIMIT %s",
            [*args, size],
        ).fetchall()
    lines: list[Sequence[object]] = [CSV_COLUMNS] if after is None else []
    lines += [
        [r["ts"].astimezone(tz).isoformat(timespec="milliseconds") if c == "ts" else r[c] for c in CSV_COLUMNS]
        for r in rows
    ]
    return csv_text(lines), ((rows[-1]["ts"], rows[-1]["k"]) if len(rows) == size else None)


def model_shown(status: dict | None) -> dict | None:
    """The model version a station runs, as its latest status says: the version (12 hex digits), the
    alias it follows and that alias's state (docs/model-lifecycle.md)."""
    if not isinstance(status, dict) or not status.get("model"):
        return None
    follow = status.get("model_follow")
    follow = follow if isinstance(follow, dict) else {}
    return {
        "version": str(status["model"]),
        "alias": follow.get("alias"),
        "state": follow.get("state"),
        "shadow": shadow_shown(status.get("shadow")),
    }


def shadow_shown(shadow: object) -> str | None:
    """The station's shadow in a few words: the version beside production and its agreement so far,
    or how its last run ended (docs/model-lifecycle.md, "Shadow on the line")."""
    if not isinstance(shadow, dict):
        return None
    if shadow.get("state") == "running":
        agreement = shadow.get("agreement")
        agreed = "–" if not isinstance(agreement, int | float) else f"{100 * agreement:.1f} %"
        return (
            f"shadow {shadow.get('version', '?')}: {shadow.get('shadowed', 0)} parts, agreement {agreed}, "
            f"{shadow.get('skipped', 0)} skipped"
        )
    last = shadow.get("last")
    if isinstance(last, dict):
        found = last.get("counts")
        counts = found if isinstance(found, dict) else {}
        judged = (counts.get("shadowed") or 0) - (counts.get("unfamiliar") or 0)  # compared parts
        differ = counts.get("disagreements") or 0
        agreed = f", agreement {100 * (judged - differ) / judged:.1f} % of {judged}" if judged else ""
        return f"shadow {last.get('version', '?')} ended ({last.get('reason', '')}){agreed}"
    return None
