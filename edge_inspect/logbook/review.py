"""QA review on the log: filters, pages, details, dispositions with an audit trail, CSV, and the
figures behind the charts. Plain SQL on the store's SQLite file; every write is one transaction."""

from __future__ import annotations

import csv
import io
import json
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone, tzinfo

import sqlite_utils

from ..http.filters import FilterError, common_filters
from ..http.spreadsheet import csv_cell
from ..http.timefmt import iso_local, station_zone
from .store import READER_CACHE_KIB, Store, inserted_id

DISPOSITIONS = ("confirmed_defect", "false_reject", "missed_defect")
COUNT_AHEAD = 10_000  # a page's total counts at most this many rows past the page (docs/log.md)
CHART_WINDOW_S = 24 * 3600  # charts without a time filter cover the last 24 h


def _open_reader(path) -> sqlite3.Connection:
    """A read-only connection to the log file."""
    from pathlib import Path

    conn = sqlite3.connect(
        Path(path).resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
    return conn


READERS = 4  # read-only connections per log: bounds memory (each caches pages) and concurrent SQLite work


class _Readers:
    def __init__(self, path, trace: Callable[[str], None] | None = None):
        self.path, self.made, self.lock = path, 0, threading.Lock()
        self.free: queue.LifoQueue[sqlite_utils.Database] = queue.LifoQueue()
        self.trace = trace  # trace_sql's callback, given to each connection
        self.setup: Callable[[sqlite3.Connection], None] | None = None  # on_read_connection's
        self.all: list[sqlite_utils.Database] = []

    def take(self) -> sqlite_utils.Database:
        try:
            return self.free.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if self.made < READERS:
                self.made += 1
                conn = _open_reader(self.path)
                conn.set_trace_callback(self.trace)
                if self.setup is not None:
                    self.setup(conn)
                db = sqlite_utils.Database(conn)
                self.all.append(db)
                return db
        return self.free.get()


_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def _pool(store: Store) -> _Readers:
    with _pools_lock:
        pool = _pools.get(store)
        if pool is None:
            pool = _pools[store] = _Readers(store.path, store.sql_trace)
        return pool


def trace_sql(store: Store, callback: Callable[[str], None] | None) -> None:
    """Hand every SQL statement of this log — on the store's writer and on the read connections,
    those open now and those opened later — to ``callback`` (None: stop). Diagnostics: which
    thread queries, which plans the queries take."""
    store.sql_trace = callback
    store.conn.set_trace_callback(callback)
    pool = _pool(store)
    with pool.lock:
        pool.trace = callback
        for db in pool.all:
            db.conn.set_trace_callback(callback)


def on_read_connection(store: Store, setup: Callable[[sqlite3.Connection], None] | None) -> None:
    """Call ``setup`` with each read connection of this log, those open now and those opened later
    (None: with none opened from now on). Diagnostics: a progress handler on them counts the SQLite
    work of the queries (tests/logbook/test_log_scale.py)."""
    pool = _pool(store)
    with pool.lock:
        pool.setup = setup
        if setup is not None:
            for db in pool.all:
                setup(db.conn)


@contextmanager
def reading(store: Store) -> Iterator[sqlite_utils.Database]:
    """A read-only connection to the store's file (one of READERS, shared by the worker threads),
    inside one read transaction (one consistent snapshot). In WAL mode a reader neither waits for
    the writer nor holds the store's lock: a page or an export never delays an inspection's
    commit, nor the other way round."""
    pool = _pool(store)
    db = pool.take()
    try:
        db.conn.execute("BEGIN")
        try:
            yield db
        finally:
            if db.conn.in_transaction:  # an I/O error may have ended it already: keep that error
                db.conn.execute("COMMIT")
    finally:
        pool.free.put(db)


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    verdict: str | None = None
    recipe: int | None = None
    check: str | None = None  # inspections in which this check did not pass
    part_id: str | None = None
    disposition: str | None = None  # one of DISPOSITIONS, or "none": not reviewed yet
    sampled: bool = False  # only the inspections review sampling chose (config review_sampling)
    page: int = 1
    per_page: int = 50

    @classmethod
    def from_query(cls, q, tz: tzinfo | None = None) -> Filters:
        """Filters from query parameters (http/filters.py, as the plant's review); times without an offset
        are in ``tz`` (the station's)."""
        disposition = q.get("disposition")
        disposition = disposition.strip() if isinstance(disposition, str) and disposition.strip() else None
        if disposition and disposition not in (*DISPOSITIONS, "none"):
            raise FilterError(f"disposition: {disposition!r} is not one of none, {', '.join(DISPOSITIONS)}")
        sampled = q.get("sampled")
        sampled = sampled.strip() if isinstance(sampled, str) else ""
        if sampled not in ("", "1"):
            raise FilterError(f"sampled: {sampled!r} is not 1 (only the parts sampled for review) or empty")
        return cls(**common_filters(q, tz), disposition=disposition, sampled=sampled == "1")

    def where(self) -> tuple[str, list]:
        clauses: list[str] = []
        args: list[object] = []
        if self.since is not None:
            clauses.append("i.ts_unix >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("i.ts_unix < ?")
            args.append(self.until)
        if self.verdict:
            clauses.append("i.verdict = ?")
            args.append(self.verdict)
        if self.recipe is not None:
            clauses.append("i.recipe = ?")
            args.append(self.recipe)
        if self.part_id:
            clauses.append("i.part_id like ?")
            args.append(f"%{self.part_id}%")
        if self.check:
            clauses.append(
                "exists (select 1 from checks c where c.inspection_id = i.id and c.name = ? and c.status != 'pass')"
            )
            args.append(self.check)
        if self.sampled:
            clauses.append("i.review_reason is not null")
        if self.disposition == "none":  # the unreviewed queue
            clauses.append("not exists (select 1 from dispositions dd where dd.inspection_id = i.id)")
        elif self.disposition:
            clauses.append(
                "exists (select 1 from dispositions dd where dd.inspection_id = i.id and dd.disposition = ?)"
            )
            args.append(self.disposition)
        return (" where " + " and ".join(clauses)) if clauses else "", args


LIST_COLUMNS = (
    "i.id, i.result_id, i.ts, i.station, i.recipe, i.recipe_name, i.part_id, i.trigger, i.verdict, "
    "i.error, i.defect_count, i.failed_checks, i.inspect_ms, i.cycle_ms, i.image_path, i.overlay_path, "
    "i.review_reason, d.disposition, d.reviewer"
)


def list_page(store: Store, f: Filters) -> tuple[list[dict], int, bool]:
    """One page, newest first, with (total, exact): the count stops COUNT_AHEAD rows past the
    page, so a page never counts the whole log; ``exact`` is False when it stopped there."""
    where, args = f.where()
    cap = f.page * f.per_page + COUNT_AHEAD
    with reading(store) as db:
        total = db.execute(
            f"select count(*) from (select 1 from inspections i{where} limit ?)", [*args, cap]
        ).fetchone()[0]
        rows = list(
            db.query(
                f"select {LIST_COLUMNS} from inspections i left join dispositions d on d.inspection_id = i.id"
                f"{where} order by i.id desc limit ? offset ?",
                [*args, f.per_page, (f.page - 1) * f.per_page],
            )
        )
    return rows, total, total < cap


def neighbours(store: Store, f: Filters, inspection_id: int) -> tuple[int | None, int | None]:
    """The inspections before (older) and after (newer) ``inspection_id`` among those ``f`` selects."""
    where, args = f.where()
    joiner = " and" if where else " where"
    with reading(store) as db:
        older = db.execute(f"select max(i.id) from inspections i{where}{joiner} i.id < ?", [*args, inspection_id])
        older = older.fetchone()[0]
        newer = db.execute(f"select min(i.id) from inspections i{where}{joiner} i.id > ?", [*args, inspection_id])
        newer = newer.fetchone()[0]
    return older, newer


AUDIT_ACTIONS = ("disposition", "correction", "trigger", "ack_alarm", "retention", "config", "setup_try")


def audit_page(store: Store, action: str | None, page: int = 1, per_page: int = 100) -> tuple[list[dict], bool]:
    """Audit rows, newest first (optionally one action), and whether there are more."""
    where, args = (" where action = ?", [action]) if action else ("", [])
    with reading(store) as db:
        rows = list(
            db.query(
                f"select * from audit{where} order by id desc limit ? offset ?",
                [*args, per_page + 1, (page - 1) * per_page],
            )
        )
    return rows[:per_page], len(rows) > per_page


def judged_any(store: Store, model_sha256: str) -> bool:
    """Whether the log holds a part that model version judged (one scan, at a station's start)."""
    with reading(store) as db:
        return (
            db.execute("select 1 from inspections where model_sha256 = ? limit 1", [model_sha256]).fetchone()
            is not None
        )


def sampled_times(store: Store, since: float) -> list[float]:
    """When each part sampled for review since ``since`` was logged (the sampler's caps across a restart)."""
    with reading(store) as db:
        return [
            row[0]
            for row in db.execute(
                "select ts_unix from inspections where review_reason is not null and ts_unix >= ? order by id",
                [since],
            )
        ]


def latest_inspection(store: Store) -> dict | None:
    """The newest inspection with its checks (the HMI): one index step, no count."""
    with reading(store) as db:
        row = db.execute("select max(id) from inspections").fetchone()
    return get_inspection(store, row[0]) if row and row[0] else None


def get_inspection(store: Store, inspection_id: int) -> dict | None:
    if not 0 < inspection_id < 2**63:  # SQLite's integer range; a URL may carry any number
        return None
    with reading(store) as db:
        rows = list(db.query("select * from inspections where id = ?", [inspection_id]))
        if not rows:
            return None
        row = rows[0]
        row["checks"] = list(db.query("select * from checks where inspection_id = ? order by idx", [inspection_id]))
        points = list(
            db.query("select check_idx, x, y, x_mm, y_mm from points where inspection_id = ?", [inspection_id])
        )
        for check in row["checks"]:
            mine = [p for p in points if p["check_idx"] == check["idx"]]
            check["points"] = [[p["x"], p["y"]] for p in mine]
            check["points_mm"] = [[p["x_mm"], p["y_mm"]] for p in mine if p["x_mm"] is not None]
        disp = list(db.query("select * from dispositions where inspection_id = ?", [inspection_id]))
        row["disposition"] = disp[0] if disp else None
        row["audit"] = list(db.query("select * from audit where inspection_id = ? order by id", [inspection_id]))
        row["corrections"] = list(
            db.query("select * from corrections where inspection_id = ? order by id", [inspection_id])
        )
        row["views"] = list(  # a part seen by several cameras: each view (none for one camera)
            db.query(
                "select view, frame_id, camera_ts_ns, width, height, grab_ms, error, image_path, overlay_path "
                "from inspection_views where inspection_id = ? order by idx",
                [inspection_id],
            )
        )
    return row


def set_disposition(store: Store, inspection_id: int, disposition: str, reviewer: str, comment: str) -> dict:
    """QA's disposition of one inspection (replacing an earlier one), with its audit row and, with fleet
    publishing, its message in the outbox: all in one transaction (docs/fleet.md)."""
    if disposition not in DISPOSITIONS:
        raise FilterError(f"disposition: {disposition!r} is not one of {', '.join(DISPOSITIONS)}")
    at = time.time()
    now = datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
    with store.transaction() as db:
        before = db.execute(
            "select disposition, reviewer, comment from dispositions where inspection_id = ?", [inspection_id]
        ).fetchone()
        before = dict(zip(("disposition", "reviewer", "comment"), before, strict=True)) if before else None
        after = {"disposition": disposition, "reviewer": reviewer, "comment": comment[:2000]}
        db.execute(
            "insert into dispositions (inspection_id, disposition, reviewer, comment, ts) values (?, ?, ?, ?, ?) "
            "on conflict (inspection_id) do update set disposition = excluded.disposition, "
            "reviewer = excluded.reviewer, comment = excluded.comment, ts = excluded.ts",
            [inspection_id, disposition, reviewer, after["comment"], now],
        )
        cursor = db.execute(
            "insert into audit (ts, user, action, inspection_id, detail) values (?, ?, ?, ?, ?)",
            [now, reviewer, "disposition", inspection_id, json.dumps({"before": before, "after": after})],
        )
        store.queue_review(
            db,
            inspection_id,
            {"event": "disposition", "seq": inserted_id(cursor), "at": at, "reviewer": reviewer,
             "disposition": {"disposition": disposition, "comment": after["comment"]}},
        )  # fmt: skip
    return after


def audit(store: Store, user: str, action: str, detail: dict, inspection_id: int | None = None) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with store.transaction() as db:
        db.execute(
            "insert into audit (ts, user, action, inspection_id, detail) values (?, ?, ?, ?, ?)",
            [now, user, action, inspection_id, json.dumps(detail)],
        )


CSV_FIELDS = [
    "id",
    "result_id",
    "time",
    "station",
    "recipe",
    "recipe_name",
    "part_id",
    "trigger",
    "verdict",
    "error",
    "defect_count",
    "failed_checks",
    "inspect_ms",
    "cycle_ms",
    "disposition",
    "reviewer",
    "comment",
    "review_reason",
]
_CSV_COLUMNS = (
    "i.id, i.result_id, i.ts_unix, i.station, i.recipe, i.recipe_name, i.part_id, i.trigger, i.verdict, "
    "i.error, i.defect_count, case when i.failed_checks = 0 then null else (select group_concat((c.idx + 1) || ' ' || "
    "c.name, ';') from checks c where c.inspection_id = i.id and c.status != 'pass') end, "  # '2 screws;3 label'
    "i.inspect_ms, i.cycle_ms, d.disposition, d.reviewer, d.comment, i.review_reason"
)


def csv_chunks(store: Store, f: Filters, tz: tzinfo, chunk: int = 2000) -> Iterator[Callable[[], str]]:
    """The CSV as a sequence of functions, each returning the next piece of text (run them in a
    worker thread: each reads one chunk on a read-only connection, so memory stays flat and the
    writer is never held up)."""
    where, args = f.where()
    state = {"after": 0, "header": True, "done": False}

    def next_piece() -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        if state["header"]:
            writer.writerow(CSV_FIELDS)
            state["header"] = False
        keyset = (" and" if where else " where") + " i.id > ?"
        with reading(store) as db:  # plain tuples in CSV_FIELDS order: no dict per row
            size = chunk if state["after"] else min(chunk, 200)  # a small first piece: the download starts at once
            rows = db.conn.execute(
                f"select {_CSV_COLUMNS} from inspections i left join dispositions d on d.inspection_id = i.id"
                f"{where}{keyset} order by i.id limit ?",
                [*args, state["after"], size],
            ).fetchall()
        for n, r in enumerate(rows, 1):
            writer.writerow(
                [
                    csv_cell(r[0]),
                    csv_cell(r[1]),
                    iso_local(r[2], tz, "milliseconds"),
                    *map(csv_cell, r[3:11]),
                    csv_cell(r[11] or ""),
                    *map(csv_cell, r[12:]),
                ]
            )
            if n % 20 == 0:  # hand the GIL over every ~0.2 ms of work, not after the 5 ms switch interval:
                time.sleep(0)  # the loop serving the PLC (and the other requests) waits less
        if rows:
            state["after"] = rows[-1][0]
        if len(rows) < size:
            state["done"] = True
        return out.getvalue()

    while not state["done"]:
        yield next_piece


def chart_filters(f: Filters, now: float | None = None) -> Filters:
    """The filters the charts use: without a time filter, the last CHART_WINDOW_S (24 h)."""
    if f.since is None and f.until is None:
        return replace(f, since=(time.time() if now is None else now) - CHART_WINDOW_S)
    return f


def charts(store: Store, f: Filters, tz: tzinfo | None = None, now: float | None = None) -> dict:
    """Defect Pareto by check, yield per hour, and reviewer agreement with the appliance, over
    the filters' time range or, without one, the last 24 h (``window`` says which)."""
    f = chart_filters(f, now)
    zone = tz or station_zone(None)
    where, args = f.where()
    with reading(store) as db:
        # Failed checks are found through idx_checks_status within the id range of the time window
        # (the min and max id of the rows in it, from the (ts_unix, verdict) index): exact even if
        # the clock went back, and it reads only the window's failed checks.
        time_where, time_args = Filters(since=f.since, until=f.until).where()
        lo, hi = db.execute(f"select min(i.id), max(i.id) from inspections i{time_where}", time_args).fetchone()
        pareto = (
            []
            if lo is None
            else list(
                db.query(
                    f"select c.name, count(*) as n from checks c join inspections i on i.id = c.inspection_id{where}"
                    f"{' and' if where else ' where'} c.status = 'fail' and c.inspection_id between ? and ? "
                    f"group by c.name order by n desc",
                    [*args, lo, hi],
                )
            )
        )
        hourly = list(
            db.query(  # whole hours since the epoch, local: cheaper than strftime per row
                f"select cast((i.ts_unix + {_offset_s(tz)}) / 3600 as integer) as hour, count(*) as total, "
                f"sum(i.verdict = 'PASS') as passed from inspections i{where} group by hour order by hour desc limit 24",
                args,
            )
        )
        for h in hourly:
            h["hour"] = datetime.fromtimestamp(h["hour"] * 3600, timezone.utc).strftime("%Y-%m-%d %H:00")
        agreement = (
            []
            if lo is None
            else list(
                db.query(  # the window's dispositions, by their key
                    f"select i.verdict, d.disposition, count(*) as n from dispositions d cross join inspections i "
                    f"on d.inspection_id = i.id{where}{' and' if where else ' where'} d.inspection_id between ? and ? "
                    f"group by i.verdict, d.disposition",
                    [*args, lo, hi],
                )
            )
        )
    counts = {(r["verdict"], r["disposition"]): r["n"] for r in agreement}
    fails_reviewed = sum(n for (v, _), n in counts.items() if v == "FAIL")
    passes_reviewed = sum(n for (v, _), n in counts.items() if v == "PASS")
    return {
        "window": {"from": iso_local(f.since, zone) if f.since is not None else None,
                   "to": iso_local(f.until, zone) if f.until is not None else None},
        "pareto": pareto,
        "yield_per_hour": [{**h, "yield": h["passed"] / h["total"] if h["total"] else None} for h in reversed(hourly)],
        "agreement": {
            "fails_reviewed": fails_reviewed, "passes_reviewed": passes_reviewed,
            "false_reject_rate": counts.get(("FAIL", "false_reject"), 0) / fails_reviewed if fails_reviewed else None,
            "escape_rate": counts.get(("PASS", "missed_defect"), 0) / passes_reviewed if passes_reviewed else None,
        },
    }  # fmt: skip


def _offset_s(tz: tzinfo | None) -> int:
    """The zone's current UTC offset in seconds (hours in the charts are in the station's zone)."""
    offset = datetime.now(tz or station_zone(None)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def shift_counters(store: Store, shift_starts: list[str], now: float | None = None, tz: tzinfo | None = None) -> dict:
    """Counts since the start of the current shift (local time)."""
    now = time.time() if now is None else now
    zone = tz or station_zone(None)
    local = datetime.fromtimestamp(now, zone)
    starts = sorted(tuple(int(x) for x in s.split(":")) for s in shift_starts) or [(0, 0)]
    current = None
    for hh, mm in starts:
        candidate = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if candidate.timestamp() <= now:
            current = candidate
    if current is None:  # before the first start today: the last shift began yesterday
        hh, mm = starts[-1]
        current = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
        current = datetime.fromtimestamp(current.timestamp() - 86400, zone)
    with reading(store) as db:  # "+verdict": the (ts_unix, verdict) index, not a scan of the verdict index
        rows = {
            r["verdict"]: r["n"]
            for r in db.query(
                "select verdict, count(*) as n from inspections where ts_unix >= ? group by +verdict",
                [current.timestamp()],
            )
        }
    total = sum(rows.values())
    return {
        "shift_start": current.isoformat(timespec="minutes"),
        "total": total,
        "PASS": rows.get("PASS", 0),
        "FAIL": rows.get("FAIL", 0),
        "ERROR": rows.get("ERROR", 0),
        "yield": rows.get("PASS", 0) / total if total else None,
    }
