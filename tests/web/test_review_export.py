"""QA review exports: one time zone (the station's) with offsets, formula-safe CSV cells, failed
checks by name, CSV in chunks, links that keep odd filter values intact."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from edge_inspect.config import load_config
from edge_inspect.daemon import build_station
from edge_inspect.http.timefmt import iso_local
from edge_inspect.inspection.checks import CheckOutcome
from edge_inspect.logbook import InspectionRecord, Store, review
from edge_inspect.verdict import Verdict
from edge_inspect.web.app import build_app

from ..support.stations import write_station
from ..support.web import RECIPES, USERS, run_api


def _rec(result_id: int, part_id: str, failed: bool) -> InspectionRecord:
    outcomes = [
        CheckOutcome("surface", "point", "fail" if failed else "pass", "found 1", [(0.5, 0.5)], 1),
        CheckOutcome("screws", "count", "pass", "counted 4, expected 4", [], 4),
        CheckOutcome("label", "qa", "fail" if failed else "pass", "answered no", answer="no"),
    ]
    return InspectionRecord(
        result_id=result_id,
        station="s",
        recipe=1,
        recipe_name="plate",
        part_id=part_id,
        trigger="plc",
        verdict=Verdict.FAIL if failed else Verdict.PASS,
        error="",
        outcomes=outcomes,
        timings_ms={},
        model_sha256="m" * 64,
        config_sha256="c" * 64,
        rois=[],
    )


def test_csv_cells_cannot_become_formulas_and_failed_checks_are_named(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    first = store.record(_rec(1, "+SUM(A1:A9)", True), None)
    store.record(dataclasses.replace(_rec(2, "-1", False), review_reason="every 100th pass"), None)
    review.set_disposition(store, first, "false_reject", "qa1", '=HYPERLINK("http://evil","click")')
    tokyo = ZoneInfo("Asia/Tokyo")
    text = "".join(piece() for piece in review.csv_chunks(store, review.Filters(), tokyo))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["comment"] == '\'=HYPERLINK("http://evil","click")'
    assert rows[0]["part_id"] == "'+SUM(A1:A9)" and rows[1]["part_id"] == "-1"  # a number stays a number
    assert rows[0]["failed_checks"] == "1 surface;3 label" and rows[1]["failed_checks"] == ""  # numbered from 1
    assert rows[0]["review_reason"] == "" and rows[1]["review_reason"] == "every 100th pass"
    first_ts = store.conn.execute("select ts_unix from inspections where id = ?", [first]).fetchone()[0]
    assert rows[0]["time"] == iso_local(first_ts, tokyo, "milliseconds")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+09:00", rows[0]["time"]), rows[0]["time"]
    stamp = datetime.fromisoformat(rows[0]["time"]).timestamp()
    assert abs(stamp - first_ts) < 0.0015  # to the millisecond, not rounded to whole seconds


def test_csv_in_chunks_equals_the_whole(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    for i in range(7):
        store.record(_rec(i, f"P{i}", i % 2 == 0), None)
    tz = ZoneInfo("Europe/Berlin")
    pieces = [piece() for piece in review.csv_chunks(store, review.Filters(), tz, chunk=3)]
    assert len(pieces) == 3  # 3 + 3 + 1 rows, the header in the first
    whole = [piece() for piece in review.csv_chunks(store, review.Filters(), tz, chunk=1000)]
    assert len(whole) == 1 and "".join(pieces) == whole[0]
    assert len(list(csv.reader(io.StringIO("".join(pieces))))) == 8


def test_filters_without_offset_are_in_the_station_zone():
    tokyo, berlin = ZoneInfo("Asia/Tokyo"), ZoneInfo("Europe/Berlin")
    a = review.Filters.from_query({"from": "2026-11-29T08:00"}, tokyo).since
    b = review.Filters.from_query({"from": "2026-11-29T08:00"}, berlin).since
    assert b - a == 8 * 3600  # the same wall-clock time, eight hours apart


def test_pages_and_exports_speak_the_station_zone(tmp_path, tiny_bundle):
    path = write_station(
        tmp_path,
        tiny_bundle,
        recipes=RECIPES,
        plc={"enabled": False},
        station={"name": "tz", "timezone": "Asia/Tokyo"},
        web={"enabled": True, "open_view": True, "users": USERS},
    )

    async def main():
        config, sha = load_config(path)
        station = build_station(config, sha, path.parent)
        await station.start()
        try:
            for part in ("P0003&x", "P0003", "P0003"):
                await station.inspect(1, part_id=part)
            transport = httpx.ASGITransport(app=build_app(station, config))
            async with httpx.AsyncClient(transport=transport, base_url="http://station") as client:
                page = (await client.get("/review", params={"part_id": "P0003", "per_page": 1})).text
                detail = (await client.get("/review/1")).text
                text = (await client.get("/api/inspections.csv")).text
                return page, detail, text
        finally:
            await station.stop()

    page, detail, text = asyncio.run(main())
    assert "part_id=P0003&amp;per_page=1&amp;page=2" in page and "Asia/Tokyo (UTC+09:00)" in page
    assert "Asia/Tokyo (UTC+09:00)" in detail
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and all(r["time"].endswith("+09:00") for r in rows)


def test_links_keep_filter_values_with_ampersands(tmp_path, tiny_bundle):
    async def scenario(station, client):
        for part in ("P0003&x", "P0003&x", "P0003"):
            await station.inspect(1, part_id=part)
        return (await client.get("/review", params={"part_id": "P0003&x", "per_page": 1})).text

    page = run_api(tmp_path, tiny_bundle, scenario)
    assert "part_id=P0003%26x&amp;per_page=1&amp;page=2" in page
    assert "/api/inspections.csv?part_id=P0003%26x" in page
