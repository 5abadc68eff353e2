"""The review queries at scale: they use the indexes of schema migration 3, their work does not grow
with the log (a 10x larger log at the same rate of inspections costs about the same), and no SQLite
statement runs on the event loop that serves the PLC while pages, API and event stream are used."""

import asyncio
import importlib.util
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from edge_inspect.config import load_config
from edge_inspect.daemon import build_station
from edge_inspect.http.auth import hash_password
from edge_inspect.logbook import Store, review
from edge_inspect.web.app import serve

from ..support.paths import REPO_ROOT
from ..support.stations import free_port, write_station
from ..support.web import login_fields


def _builder():
    spec = importlib.util.spec_from_file_location("web_load", REPO_ROOT / "benchmarks" / "web_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_log


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two logs at the same rate (~1,700 inspections a day): 5,000 rows over 3 days, 50,000 over 30."""
    build_log = _builder()
    end = time.time() - 60
    out = {}
    for rows, days in ((5_000, 3), (50_000, 30)):
        folder = tmp_path_factory.mktemp(f"log{rows}")
        build_log(folder / "inspections.db", rows, days, end=end)
        out[rows] = folder
    return out


def _watch(store) -> list[tuple[int, str]]:
    """(thread id, SQL) of every statement of the store's connections, its readers' included, from now on."""
    seen: list[tuple[int, str]] = []
    review.trace_sql(store, lambda sql: seen.append((threading.get_ident(), sql)))
    return seen


def _plans(folder: Path, statements: list[str]) -> list[str]:
    db = sqlite3.connect(folder / "inspections.db")
    try:
        return [
            row[3]
            for sql in statements
            if sql.lstrip().lower().startswith("select")
            for row in db.execute("explain query plan " + sql)
        ]
    finally:
        db.close()


def _steps(store: Store, fn, *args) -> int:
    """SQLite virtual-machine steps (in thousands) of one call on a fresh read connection."""
    count = [0]

    def counted(conn: sqlite3.Connection) -> None:
        conn.set_progress_handler(lambda: count.__setitem__(0, count[0] + 1) or 0, 1000)

    store_copy = Store(store.folder)  # a new store: a new read connection
    try:
        review.on_read_connection(store_copy, counted)
        fn(store_copy, *args)
    finally:
        store_copy.close()
    return count[0]


QUERIES = {
    "shift_counters": (review.shift_counters, (["06:00", "14:00", "22:00"],)),
    "charts": (review.charts, (review.Filters(),)),
    "latest_inspection": (review.latest_inspection, ()),
    "first_page": (review.list_page, (review.Filters(),)),
    "csv_first_piece": (lambda store: next(review.csv_chunks(store, review.Filters(), None))(), ()),
}


@pytest.mark.parametrize("name", ["shift_counters", "charts", "latest_inspection"])
def test_queries_use_indexes_not_scans(logs, name):
    store = Store(logs[50_000])
    seen = _watch(store)
    fn, args = QUERIES[name]
    fn(store, *args)
    plans = _plans(logs[50_000], [sql for _, sql in seen])
    assert plans, name
    # a scan is allowed only of dispositions (reviewed parts, few) and of temporary b-trees
    scans = [p for p in plans if p.startswith("SCAN") and p not in ("SCAN d",)]
    assert not scans, (name, plans)
    if name == "shift_counters":
        assert any("idx_inspections_ts_verdict" in p for p in plans), plans
    if name == "charts":
        assert any("idx_checks_status" in p for p in plans), plans
        assert any("COVERING INDEX idx_inspections_ts_verdict" in p for p in plans), plans
    store.close()


def test_migration_3_indexes_exist(logs):
    db = sqlite3.connect(logs[5_000] / "inspections.db")
    names = {r[0] for r in db.execute("select name from sqlite_master where type = 'index'")}
    db.close()
    assert {"idx_inspections_ts_verdict", "idx_checks_status"} <= names
    assert "idx_inspections_ts_unix" not in names  # a prefix of (ts_unix, verdict)


@pytest.mark.parametrize("name", list(QUERIES))
def test_work_does_not_grow_with_the_log(logs, name):
    """The same rate of inspections, ten times the history: at most 2x the SQLite steps (a count or
    scan over the table would be 10x). A filtered page still counts its matches up to the cap."""
    fn, args = QUERIES[name]
    small, large = (Store(logs[n]) for n in (5_000, 50_000))
    try:
        steps = [_steps(s, fn, *args) for s in (small, large)]
    finally:
        small.close()
        large.close()
    assert steps[1] <= 2 * steps[0] + 20, (name, steps)


def test_page_total_is_capped_and_says_so(logs):
    store = Store(logs[50_000])
    rows, total, exact = review.list_page(store, review.Filters())
    assert len(rows) == 50 and total == 50 + review.COUNT_AHEAD and not exact
    rows, total, exact = review.list_page(store, review.Filters(verdict="ERROR"))
    assert (
        exact and total == store.conn.execute("select count(*) from inspections where verdict = 'ERROR'").fetchone()[0]
    )
    store.close()


def test_charts_default_to_the_last_24_hours(logs):
    store = Store(logs[50_000])
    now = time.time()
    out = review.charts(store, review.Filters(), now=now)
    fails = store.conn.execute(
        "select count(*) from checks c join inspections i on i.id = c.inspection_id "
        "where i.ts_unix >= ? and c.status = 'fail'",
        [now - 86400],
    ).fetchone()[0]
    assert 0 < sum(p["n"] for p in out["pareto"]) == fails
    day = store.conn.execute("select count(*) from inspections where ts_unix >= ?", [now - 86400]).fetchone()[0]
    assert 0.9 * day < sum(h["total"] for h in out["yield_per_hour"]) <= day  # 24 hourly bars, the oldest cut
    assert out["window"]["from"] and out["window"]["to"] is None
    everything = review.charts(store, review.Filters(since=0.0), now=now)
    assert (
        sum(p["n"] for p in everything["pareto"])
        == store.conn.execute("select count(*) from checks where status = 'fail'").fetchone()[0]
    )
    store.close()


USERS = [{"name": "qa", "role": "qa", "password_hash": hash_password("qa")}]


def test_no_sqlite_on_the_loop_thread(tmp_path, tiny_bundle):
    """Pages, API, CSV, charts, SSE and a disposition, on the real server, while inspections run:
    every statement of the review's connections and of the store's own runs in a worker thread."""
    port = free_port()
    path = write_station(
        tmp_path,
        tiny_bundle,
        plc={"enabled": False},
        web={"enabled": True, "open_view": True, "port": port, "users": USERS},
    )

    async def main():
        config, sha = load_config(path)
        station = build_station(config, sha, path.parent)
        seen = _watch(station.store)
        await station.start()
        web = await serve(station, config)
        loop_thread = threading.get_ident()
        got_inspection_event = False
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                await station.inspect(1, part_id="A1")

                subscribed = asyncio.Event()  # the stream's first event (the status) comes once it is subscribed

                async def events():
                    async with client.stream("GET", "/api/events") as r:
                        async for line in r.aiter_lines():
                            subscribed.set()
                            if line.startswith("event: inspection"):
                                return True
                    return False

                listener = asyncio.create_task(events())
                await asyncio.wait_for(subscribed.wait(), 20)
                await station.inspect(1, part_id="A2")
                got_inspection_event = await asyncio.wait_for(listener, 20)
                for url in (
                    "/",
                    "/review",
                    "/review?verdict=FAIL&page=1",
                    "/review/1",
                    "/api/status",
                    "/api/inspections",
                    "/api/inspections/1",
                    "/api/inspections/1/overlay",
                    "/api/inspections.csv",
                    "/api/charts",
                    "/api/charts?from=2000-01-01",
                    "/metrics",
                ):
                    r = await client.get(url)
                    assert r.status_code in (200, 404), (url, r.status_code)
                r = await client.post("/login", data=await login_fields(client, "qa", "qa", next="/"))
                csrf = (await client.get("/api/session")).json()["csrf"]
                r = await client.post(
                    "/api/inspections/1/disposition",
                    headers={"X-CSRF-Token": csrf},
                    json={"disposition": "false_reject", "comment": "ok"},
                )
                assert r.status_code == 200, r.text
        finally:
            await station.stop()
            await web.stop()
        return loop_thread, got_inspection_event, seen

    loop_thread, got_event, seen = asyncio.run(main())
    assert got_event
    statements = [sql for _, sql in seen]
    assert any("from inspections" in s.lower() for s in statements)  # the watch saw the queries
    on_loop = [sql for thread, sql in seen if thread == loop_thread]
    assert not on_loop, on_loop[:5]
