"""Values from outside have strict types: a bool is not a number, a string is not a number (REST); the
station publishes no fleet message its own schema refuses, and every message it makes passes it."""

from __future__ import annotations

from edge_inspect.fleet.link import attach_outbox
from edge_inspect.fleet.messages import Topics
from edge_inspect.fleet.schema import parse_message
from edge_inspect.logbook import Store
from edge_inspect.verdict import Verdict

from ..support.records import record
from ..support.web import login, run_api


def test_trigger_refuses_a_bool_a_string_or_a_float_for_the_recipe(tmp_path, tiny_bundle):
    async def scenario(station, client):
        csrf = await login(client, "operator")
        h = {"X-CSRF-Token": csrf}
        out = [
            (await client.post("/api/trigger", headers=h, json=body)).status_code
            for body in (
                {"recipe": True},
                {"recipe": "1"},
                {"recipe": 1.0},
                {"recipe": None},
                {"recipe": 1, "part_id": 5},
                {"recipe": 1, "part_id": "x" * 21},
                {"recipe": 1, "part_id": "caf\u00e9"},
                {"recipe": 99},
            )
        ]
        ok = await client.post("/api/trigger", headers=h, json={"recipe": 2, "part_id": "=HYPERLINK(1)"})
        return out, ok.status_code, station.counters["total"]

    out, ok, total = run_api(tmp_path, tiny_bundle, scenario)
    assert out == [400] * 8
    assert ok == 200 and total == 1  # nothing refused reached the station


def test_every_message_the_station_makes_passes_the_fleet_schema(tmp_path):
    store = Store(tmp_path, save_pass_every=0)
    attach_outbox(store, Topics("edge-inspect", "plant", "l1", "st"))
    for i, part in enumerate(["P1", "", "=1+1", "a\"b'c", " " * 20, "~!@#$%^&*()"]):
        store.record(record(i, Verdict.FAIL if i % 2 else Verdict.PASS, part_id=part), None)
    payloads = [p for (p,) in store.conn.execute("select payload from outbox order by seq")]
    store.close()
    assert len(payloads) == 6
    for payload in payloads:
        body, message = parse_message(payload, "inspection")
        assert message.part_id == body["part_id"]


def test_a_message_the_schema_refuses_is_not_queued(tmp_path, caplog):
    store = Store(tmp_path, save_pass_every=0)
    attach_outbox(store, Topics("edge-inspect", "plant", "l1", "st"))
    row_id = store.record(record(1, Verdict.PASS, part_id="x" * 300), None)  # longer than the schema allows
    assert row_id and store.conn.execute("select count(*) from outbox").fetchone()[0] == 0
    assert store.conn.execute("select count(*) from inspections").fetchone()[0] == 1  # the log row stays
    store.close()
    assert "breaks the fleet schema" in caplog.text


def test_a_utc_time_with_z_is_read_on_every_python():
    """Python 3.10's datetime.fromisoformat does not read a trailing Z; the filters do."""
    from edge_inspect.http.filters import parse_time

    assert parse_time("2026-11-29T08:00Z", "from") == parse_time("2026-11-29T08:00+00:00", "from") == 1795939200.0


def test_rest_bodies_are_strict_a_bool_is_no_index_and_text_is_no_number(tmp_path, tiny_bundle):
    """Dispositions, point corrections and setup saves: the wrong JSON type, or a key the endpoint does
    not know, is a 400 naming the key — nothing is stored."""
    from ..support.web import login_headers, run_setup

    async def review_scenario(station, client):
        await station.inspect(1)
        h = await login_headers(client, "qa")
        sent = {
            "comment_number": ("disposition", {"disposition": "false_reject", "comment": 5}),
            "unknown_key": ("disposition", {"disposition": "false_reject", "by": "me"}),
            "bool_index": ("corrections", {"check_idx": True, "add": [[0.5, 0.5]]}),
            "text_coords": ("corrections", {"check_idx": 0, "add": [["0.5", "0.5"]]}),
            "three_coords": ("corrections", {"check_idx": 0, "add": [[0.5, 0.5, 0.5]]}),
        }
        out = {k: await client.post(f"/api/inspections/1/{path}", headers=h, json=b) for k, (path, b) in sent.items()}
        out["stored"] = (await client.get("/api/inspections/1")).json()
        return out

    (tmp_path / "review").mkdir()
    out = run_api(tmp_path / "review", tiny_bundle, review_scenario)
    for key, prefix in [("comment_number", "comment:"), ("unknown_key", "by:"), ("bool_index", "check_idx:"),
                        ("text_coords", "add.0.0:"), ("three_coords", "add.0:")]:  # fmt: skip
        assert out[key].status_code == 400 and out[key].json()["error"].startswith(prefix), (key, out[key].text)
    assert out["stored"].get("disposition") in (None, {}) or out["stored"]["disposition"] is None

    async def setup_scenario(station, client, path):
        h = await login_headers(client, "integrator")
        return [
            await client.post("/api/setup/config", headers=h, json={"yaml": "x", "base_sha256": 1}),
            await client.post("/api/setup/config", headers=h, json={"recipes": "all", "base_sha256": "0" * 64}),
            await client.post("/api/setup/disk", headers=h, json={"action": True}),
        ]

    (tmp_path / "setup").mkdir()
    answers = run_setup(tmp_path / "setup", setup_scenario)
    for r, prefix in zip(answers, ("base_sha256:", "recipes:", "action:"), strict=True):
        assert r.status_code == 400 and r.json()["error"].startswith(prefix), r.text
