"""The plant web uses the station web's code for what they share: a formula logged at a station
reaches the plant's CSV neutralised, and both reviews accept and refuse the same filter values."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import timezone

import pytest

from edge_inspect.fleet.link import attach_outbox
from edge_inspect.fleet.messages import Topics
from edge_inspect.fleet.mqtt import BrokerSettings
from edge_inspect.http.filters import FilterError
from edge_inspect.logbook import Store, review
from edge_inspect.plant.collector import Collector
from edge_inspect.verdict import Verdict

from ..support.records import record
from ..support.web import login, run_api

FORMULAS = ['=HYPERLINK("x")', "@SUM(1)", "+cmd|' /C calc'!A0", "-1+2", "\t=1"]


class _NoBroker:
    def ack(self, mid, qos):
        pass

    def publish(self, *args, **kwargs):
        pass


def test_formulas_logged_at_a_station_reach_the_plant_csv_neutralised(tmp_path, postgres):
    from starlette.testclient import TestClient

    from edge_inspect.plant.app import build_app

    dsn = postgres.database("plant_csv")
    store = Store(tmp_path / "station", save_pass_every=0)
    topics = Topics("edge-inspect", "plant", "l1", "st1")
    attach_outbox(store, topics)
    for i, part in enumerate([*FORMULAS, "-12.5"], 1):
        store.record(replace(record(i, Verdict.FAIL, part_id=part), recipe_name="=1+2"), None)
    items = [
        (topics.of("inspection"), payload.encode(), 0, 1)
        for (payload,) in store.conn.execute("select payload from outbox order by seq")
    ]
    station_csv = "".join(piece() for piece in review.csv_chunks(store, review.Filters(), timezone.utc))
    store.close()
    collector = Collector(BrokerSettings("127.0.0.1"), dsn, client=_NoBroker())
    collector.check_database()
    import psycopg

    with psycopg.connect(dsn) as conn:
        collector.write(conn, items)
    client = TestClient(build_app(dsn, [], open_view=True))
    plant = list(csv.DictReader(io.StringIO(client.get("/api/inspections.csv").text)))
    station = list(csv.DictReader(io.StringIO(station_csv)))
    plant_parts = {r["part_id"] for r in plant}
    assert plant_parts == {r["part_id"] for r in station}  # one implementation: the same cells
    assert plant_parts == {"'" + p for p in FORMULAS} | {"-12.5"}  # a number stays a number
    assert {r["recipe_name"] for r in plant} == {"'=1+2"}


VALUES = [
    ("verdict", "pass"),
    ("verdict", "MAYBE"),
    ("recipe", "0"),
    ("recipe", "65535"),
    ("recipe", "65536"),
    ("recipe", "-1"),
    ("recipe", "1.5"),
    ("recipe", "true"),
    ("recipe", "\u0663"),
    ("page", "0"),
    ("page", "1000000"),
    ("page", "1000001"),
    ("per_page", "500"),
    ("per_page", "501"),
    ("from", "2026-01-01T08:00"),
    ("from", "2026-01-01T08:00+09:00"),
    ("from", "0001-01-01T00:00+14:00"),
    ("to", "9999-12-31T23:59:59-14:00"),
    ("to", "1969-12-31T00:00Z"),
    ("from", "yesterday"),
    ("check", "=x"),
    ("part_id", "%_\\"),
]


@pytest.mark.parametrize("name, value", VALUES)
def test_station_and_plant_filters_accept_and_refuse_the_same_values(name, value):
    from edge_inspect.plant.queries import Filters as PlantFilters

    outcomes = []
    for parse in (review.Filters.from_query, PlantFilters.from_query):
        try:
            parse({name: value}, timezone.utc)
            outcomes.append("ok")
        except FilterError as err:
            outcomes.append(str(err).split(":")[0])
    assert outcomes[0] == outcomes[1], (name, value, outcomes)


def test_out_of_range_filters_are_400_never_500(tmp_path, tiny_bundle):
    async def scenario(station, client):
        await station.inspect(1)
        await login(client, "qa")
        return [
            (await client.get(url)).status_code
            for url in (
                "/review?from=0001-01-01T00:00%2B14:00",
                "/api/charts?from=0001-01-01T00:00%2B14:00",
                "/api/inspections?to=9999-12-31T23:59:59-14:00",
                "/api/inspections.csv?recipe=70000",
                "/review?from=2026-01-01T00:00",
            )
        ]

    assert run_api(tmp_path, tiny_bundle, scenario) == [400, 400, 400, 400, 200]
