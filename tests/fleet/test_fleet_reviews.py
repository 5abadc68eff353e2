"""QA's review reaches the plant (docs/fleet.md, "review") and becomes the same training records there
as on the station (docs/model-lifecycle.md, "Labels from review"). Real parts: two stations (the daemon's
station and web on real ports, the demo student, SQLite logs), Mosquitto, the collector into PostgreSQL
fetching the frames from the stations' APIs, and both `dataset export` commands."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from edge_inspect.config import load_config
from edge_inspect.daemon import Daemon, build_station
from edge_inspect.fleet.link import attach_outbox
from edge_inspect.fleet.messages import Topics, dumps, new_id, review_payload
from edge_inspect.fleet.mqtt import BrokerSettings
from edge_inspect.logbook import Store, config_versions, corrections, review
from edge_inspect.plant.collector import Collector, StationAccess
from edge_inspect.plant.images import FolderImageStore
from edge_inspect.verdict import Verdict

from ..support.fleet_services import Mosquitto
from ..support.paths import DEMO_STUDENT
from ..support.records import FRAME
from ..support.records import record as _record
from ..support.stations import free_port, write_station
from ..support.wait import async_wait_until
from ..support.web import USERS, login_headers

psycopg = pytest.importorskip("psycopg")
httpx = pytest.importorskip("httpx")


def _rows(dsn: str, sql: str, args=()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _records(out: Path) -> dict[str, list[dict]]:
    return {side: [json.loads(line) for line in (out / f"{side}.jsonl").open()] for side in ("train", "holdout")}


# -- the station's side: the review's message commits with the review --------------------------------
def test_review_messages_commit_with_the_review_and_carry_the_checks(tmp_path):
    store = Store(tmp_path, save_pass_every=1)
    text = yaml.safe_dump({"recipes": [{"number": 1, "name": "plate", "checks": [
        {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
        {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"}]}]})  # fmt: skip
    config_versions.record(store, text, "c" * 64, "test", "boot")  # the version the records name
    outbox = attach_outbox(store, Topics("edge-inspect", "p", "l", "s"))
    inspection = store.record(_record(1, Verdict.FAIL), FRAME)
    review.set_disposition(store, inspection, "false_reject", "qa", "scratch is dust")
    corrections.add(store, inspection, 0, [[0.25, 0.75]], [[0.5, 0.5]], "qa2")
    rows = store.conn.execute("select msg_id, kind, payload from outbox where kind = 'review' order by seq").fetchall()
    disposition, correction = (json.loads(r[2]) for r in rows)
    assert [r[1] for r in rows] == ["review", "review"] and disposition["id"] == rows[0][0]
    assert disposition["inspection_id"] == inspection and disposition["event"] == "disposition"
    assert disposition["disposition"] == {"disposition": "false_reject", "comment": "scratch is dust"}
    assert disposition["reviewer"] == "qa" and disposition["seq"] < correction["seq"]
    assert [d["name"] for d in disposition["definitions"]] == ["surface", "label"]
    surface, label = disposition["definitions"]
    assert surface["prompt"] == "Point to any surface defects." and surface["max"] == 0 and surface["kind"] == "point"
    assert label["prompt"] == "Is the label present?" and label["expect"] == "yes"
    ids = [r[0] for r in store.conn.execute("select id from corrections order by id")]
    assert correction["correction"] == {
        "check_idx": 0,
        "points": [
            {"id": ids[0], "x": 0.25, "y": 0.75, "action": "add"},
            {"id": ids[1], "x": 0.5, "y": 0.5, "action": "remove"},
        ],
    }
    assert correction["reviewer"] == "qa2" and outbox.count == 3

    # The outbox insert fails (in SQLite, on the store's own connection): the review must not commit
    # without its message.
    store.conn.execute(
        "CREATE TEMP TRIGGER outbox_refuses BEFORE INSERT ON main.outbox "
        "BEGIN SELECT RAISE(ABORT, 'message could not be made'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="message could not be made"):
        review.set_disposition(store, inspection, "confirmed_defect", "qa", "")
    with pytest.raises(sqlite3.IntegrityError, match="message could not be made"):
        corrections.add(store, inspection, 0, [[0.1, 0.1]], [], "qa")
    assert review.get_inspection(store, inspection)["disposition"]["disposition"] == "false_reject"
    assert store.conn.execute("select count(*) from corrections").fetchone()[0] == 2
    assert store.conn.execute("select count(*) from outbox").fetchone()[0] == 3
    store.close()


# -- the collector: a later disposition replaces, corrections append, redelivery changes nothing -----
class _NoBroker:
    def ack(self, mid, qos):
        pass

    def publish(self, *args, **kwargs):
        pass


def test_collector_keeps_the_latest_disposition_and_each_correction_once(tmp_path, postgres):
    dsn = postgres.database("fleet_reviews_store")
    collector = Collector(BrokerSettings("127.0.0.1"), dsn, client=_NoBroker())
    collector.check_database()
    topics = Topics("edge-inspect", "plant", "l1", "st1")
    topic = topics.of("review")

    def msg(seq: int, event: dict) -> tuple:
        body = review_payload(new_id(), topics, 7, {"seq": seq, "at": 1.7e9 + seq, "reviewer": f"qa{seq}", **event}, [])
        return (topic, dumps(body).encode(), 0, 1)

    first = msg(1, {"event": "disposition", "disposition": {"disposition": "confirmed_defect", "comment": ""}})
    later = msg(3, {"event": "disposition", "disposition": {"disposition": "false_reject", "comment": "dust"}})
    points = [{"id": 11, "x": 0.25, "y": 0.75, "action": "add"}, {"id": 12, "x": 0.5, "y": 0.5, "action": "remove"}]
    fix = msg(2, {"event": "correction", "correction": {"check_idx": 0, "points": points}})
    with psycopg.connect(dsn) as conn:
        collector.write(conn, [first, fix, later])
        collector.write(conn, [later, fix, first])  # redelivered, the earlier disposition last: nothing changes
        # the same correction in a message made anew (another id): its rows are kept once
        again = msg(2, {"event": "correction", "correction": {"check_idx": 0, "points": points[:1]}})
        collector.write(conn, [again])
    assert _rows(dsn, "select inspection_id, disposition, comment, reviewer, review_seq from review_dispositions") == [
        (7, "false_reject", "dust", "qa3", 3)
    ]
    assert _rows(
        dsn, "select correction_id, check_idx, x, y, action, reviewer from review_corrections order by correction_id"
    ) == [(11, 0, 0.25, 0.75, "add", "qa2"), (12, 0, 0.5, 0.5, "remove", "qa2")]
    assert collector.stats["dead_letters"] == 0
    # a review message the schema refuses (a correction point outside the frame) is a dead letter
    bad = json.loads(fix[1])
    bad["correction"]["points"][0]["x"] = 1.5
    with psycopg.connect(dsn) as conn:
        collector.write(conn, [(topic, dumps(bad).encode(), 0, 1)])
    ((reason,),) = _rows(dsn, "select reason from dead_letters")
    assert reason.startswith("correction.points.0.x:"), reason


# -- end to end: two stations, the broker down meanwhile, both exports compared ------------------------
def _station_config(folder: Path, name: str, broker: Mosquitto) -> tuple[Path, int, str]:
    folder.mkdir()
    port, token = free_port(), f"token-{name}-" + "x" * 20
    (folder / "token").write_text(token + "\n")
    path = write_station(
        folder,
        DEMO_STUDENT,
        station={"name": name},
        plc={"enabled": False},
        web={"enabled": True, "port": port, "users": USERS},
        fleet={
            "host": "127.0.0.1",
            "port": broker.port,
            "site": "plant",
            "line": "l1",
            "confirm_timeout_s": 2,
            "image_base_url": f"http://127.0.0.1:{port}",
            "image_token_file": "token",
        },
    )
    return path, port, token


def _run_station(path: Path, port: int, dsn: str, broker: Mosquitto, parts: int, reviews) -> None:
    """Start the station (daemon: station and web on its port), inspect ``parts`` parts, then ``reviews``
    (a coroutine given the client, QA's headers and part id → inspection id); wait until PostgreSQL holds
    its inspections, their frames and the reviews; stop."""
    key = f"plant/l1/{path.parent.name}"

    async def main():
        config, sha = load_config(path)
        daemon = Daemon(build_station(config, sha, path.parent, config_path=path))
        await daemon.start()
        try:
            ids = {}
            for i in range(parts):
                await daemon.station.inspect(1, part_id=f"P{i}")
                ids[f"P{i}"] = daemon.station.last_row_id
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                qa = await login_headers(client, "qa")
                expected = await reviews(client, qa, ids, broker, daemon.station.store.path)

            def stored():
                return _rows(
                    dsn,
                    "select (select count(*) from inspections where station_key = %s and image_state = 'done'), "
                    "(select count(*) from review_dispositions where station_key = %s), "
                    "(select count(*) from review_corrections where station_key = %s)",
                    [key, key, key],
                )[0] == (parts, *expected)

            await async_wait_until(lambda: asyncio.to_thread(stored), 120, f"{key}'s inspections, frames and reviews")
        finally:
            await daemon.stop()

    asyncio.run(main())


async def _review_a(client, qa, ids, broker, log):
    async def disposition(part, value):
        r = await client.post(f"/api/inspections/{ids[part]}/disposition", json={"disposition": value}, headers=qa)
        assert r.status_code == 200, r.text

    await disposition("P0", "confirmed_defect")
    await disposition("P1", "confirmed_defect")
    await disposition("P1", "false_reject")  # QA changes their mind: the plant keeps the later one
    detail = (await client.get(f"/api/inspections/{ids['P2']}")).json()
    screws = detail["checks"][1]["points"]
    r = await client.post(
        f"/api/inspections/{ids['P2']}/corrections",
        json={"check_idx": 1, "add": [[0.25, 0.75]], "remove": screws[:1]},
        headers=qa,
    )
    assert r.status_code == 200, r.text
    await disposition("P2", "missed_defect")
    return 3, 1 + len(screws[:1])  # dispositions, correction rows


async def _review_b(client, qa, ids, broker, log):
    broker.stop()  # QA reviews while the plant's broker is down: the reviews wait in the outbox
    for part in ("P0", "P4"):  # P0: the same frame as station A's P0
        r = await client.post(
            f"/api/inspections/{ids[part]}/disposition", json={"disposition": "confirmed_defect"}, headers=qa
        )
        assert r.status_code == 200, r.text
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as conn:
        assert conn.execute("select count(*) from outbox where kind = 'review'").fetchone()[0] == 2
    broker.start()
    return 2, 0


def test_reviews_reach_the_plant_and_its_export_equals_the_stations(tmp_path, postgres):
    dsn = postgres.database("fleet_reviews")
    broker = Mosquitto(tmp_path).start()
    stations = {name: _station_config(tmp_path / name, name, broker) for name in ("st-a", "st-b")}
    images = tmp_path / "plant-images"
    collector = Collector(
        BrokerSettings.from_url(broker.url),
        dsn,
        images=FolderImageStore(images),
        tokens={f"plant/l1/{n}": StationAccess(f"http://127.0.0.1:{p}", t) for n, (_, p, t) in stations.items()},
    )
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    try:
        path, port, _ = stations["st-a"]
        _run_station(path, port, dsn, broker, 4, _review_a)
        path, port, _ = stations["st-b"]
        _run_station(path, port, dsn, broker, 5, _review_b)
    finally:
        collector.stop()
        runner.join(10)
        broker.stop()
    assert _rows(dsn, "select disposition from review_dispositions where station_key = 'plant/l1/st-a' "
                      "order by inspection_id") == [("confirmed_defect",), ("false_reject",), ("missed_defect",)]  # fmt: skip
    for name, (path, _, _) in stations.items():  # the outbox is empty: every review confirmed by the collector
        with sqlite3.connect(f"file:{path.parent / 'data' / 'inspections.db'}?mode=ro", uri=True) as conn:
            assert conn.execute("select count(*) from outbox").fetchone()[0] == 0, name

    # Each station's own export, and the plant's across both.
    station_out = {}
    for name, (path, _, _) in stations.items():
        station_out[name] = tmp_path / f"export-{name}"
        done = _cli("dataset", "export", str(station_out[name]), "--config", str(path))
        assert done.returncode == 0, done.stderr
    plant = tmp_path / "export-plant"
    done = _cli("fleet", "dataset", "export", str(plant), "--db", dsn, "--images", str(images))
    assert done.returncode == 0, done.stderr
    a, b, got = _records(station_out["st-a"]), _records(station_out["st-b"]), _records(plant)

    # The same frame at both stations: one image, its questions once (station A's, inspected first).
    shared = {r["source"]["image_sha256"] for side in a.values() for r in side if r["source"]["inspection"] == 1}
    assert shared == {
        r["source"]["image_sha256"] for side in b.values() for r in side if r["source"]["inspection"] == 1
    }
    assert b["train"] + b["holdout"], "station B's export is empty"
    for side in ("train", "holdout"):  # per side: the split is the station's, by image hash
        seen = {(r["source"]["image_sha256"], r["prompt"]) for r in a[side]}
        expected = a[side] + [r for r in b[side] if (r["source"]["image_sha256"], r["prompt"]) not in seen]
        assert [r["source"].pop("site") for r in got[side]] == ["plant"] * len(got[side])
        assert [r["source"].pop("line") for r in got[side]] == ["l1"] * len(got[side])
        assert got[side] == expected, side  # labels, targets, provenance: the same records
    assert any(r["source"]["station"] == "st-b" for side in got.values() for r in side)
    assert not any(
        r["source"]["station"] == "st-b" and r["source"]["image_sha256"] in shared
        for side in got.values()
        for r in side
    )
    corrected = [r for r in got["train"] + got["holdout"] if r["source"]["corrected"]]
    assert corrected and all([0.25, 0.75] in r["points"] for r in corrected)
    names = {p.name for p in (plant / "images").iterdir()}
    assert names == {p.name for name in station_out.values() for p in (name / "images").iterdir()}
    for image in names:  # byte for byte the stations' frames
        source = next(out / "images" / image for out in station_out.values() if (out / "images" / image).exists())
        assert (plant / "images" / image).read_bytes() == source.read_bytes()
    again = _cli("fleet", "dataset", "export", str(plant), "--db", dsn, "--images", str(images))
    assert again.returncode == 0 and ", 0 new images" in again.stdout, again.stdout + again.stderr
    only_b = _cli(
        "fleet", "dataset", "export", str(tmp_path / "only-b"), "--db", dsn, "--images", str(images),
        "--station", "plant/l1/st-b",
    )  # fmt: skip
    assert only_b.returncode == 0, only_b.stderr
    only = _records(tmp_path / "only-b")
    for side in only.values():
        for r in side:
            assert (r["source"].pop("site"), r["source"].pop("line")) == ("plant", "l1")
    assert only == b

    # A few frames may all fall on the train side at ~10 %: the split once more at half and half (both
    # exports' holdout_percent), so that both sides hold records and are compared.
    from edge_inspect.commands import dataset, fleet_dataset

    halves = {}
    for name, (path, _, _) in stations.items():
        config, _ = load_config(path)
        store = Store(path.parent / "data")
        dataset.export(store, tmp_path / f"half-{name}", config.recipes, holdout_percent=50)
        store.close()
        halves[name] = _records(tmp_path / f"half-{name}")
    fleet_dataset.export(dsn, str(images), tmp_path / "half-plant", holdout_percent=50)
    got = _records(tmp_path / "half-plant")
    assert got["train"] and got["holdout"], "a split at 50 % with both sides empty"
    for side in ("train", "holdout"):
        a, b = halves["st-a"][side], halves["st-b"][side]
        seen = {(r["source"]["image_sha256"], r["prompt"]) for r in a}
        for r in got[side]:
            del r["source"]["site"], r["source"]["line"]
        assert got[side] == a + [r for r in b if (r["source"]["image_sha256"], r["prompt"]) not in seen]
        assert all(dataset.holdout(r["source"]["image_sha256"], 50) == (side == "holdout") for r in got[side])


def test_plant_export_reports_bad_arguments_in_one_line(tmp_path, postgres):
    from edge_inspect.plant import pg_schema

    (tmp_path / "images").mkdir()
    (tmp_path / "a-file").write_text("")
    old = postgres.database("fleet_reviews_old")  # a database the collector of an earlier release migrated
    with psycopg.connect(old) as conn, conn.transaction():
        for migration in pg_schema.MIGRATIONS[:3]:
            migration(conn)
        conn.execute("CREATE TABLE fleet_schema (version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO fleet_schema (version) VALUES (3)")
    images = str(tmp_path / "images")
    for args, says in (
        (["out", "--db", "postgresql://nobody@127.0.0.1:1/none", "--images", images], "--db: "),
        (["a-file", "--db", old, "--images", images], "a-file: not a folder"),
        (["out", "--db", old, "--images", str(tmp_path / "missing")], "--images"),
        (["out", "--db", old, "--images", images], "schema version 3 holds no review"),
        (["out", "--db", old, "--images", images, "--station", "st1"], "--station 'st1'"),
    ):
        result = _cli("fleet", "dataset", "export", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert says in result.stderr, result.stderr
    assert not (tmp_path / "missing").exists() and not (tmp_path / "out").exists()
