"""Fleet publishing (docs/fleet.md) with real parts: Mosquitto and PostgreSQL from Debian, started and
stopped here; the station is the real daemon (`edge-inspect run`, demo student) and the collector the
real command (`edge-inspect fleet collect`). Faults: broker kill -9 mid-burst, collector kill -9,
station kill -9 — each ends with every logged inspection in PostgreSQL exactly once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from edge_inspect.config import ConfigError, load_config
from edge_inspect.errors import UserError
from edge_inspect.fleet.link import FleetLink, attach_outbox
from edge_inspect.fleet.messages import Topics, dumps
from edge_inspect.fleet.mqtt import BrokerSettings
from edge_inspect.fleet.publisher import Publisher
from edge_inspect.logbook import Store, StoreError, alarm_history
from edge_inspect.plant.collector import Collector
from edge_inspect.verdict import Verdict

from ..support.fleet_services import Mosquitto
from ..support.paths import DEMO_STUDENT
from ..support.records import FRAME
from ..support.records import record as _record
from ..support.stations import free_port, write_station
from ..support.wait import wait_for
from ..support.web import login_fields_sync

psycopg = pytest.importorskip("psycopg")


def _rows(dsn: str, sql: str, args=()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


# -- config ---------------------------------------------------------------------------------------
def test_fleet_section_is_strict_with_file_and_line(tmp_path):
    fleet = {
        "host": "broker.plant",
        "site": "plant1",
        "line": "line-2",
        "username": "st7",
        "password_env": "MQTT_PW",
        "tls": {"ca": "ca.pem"},
        "image_base_url": "https://st7.plant:8080/",
    }
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config, _ = load_config(write_station(tmp_path, DEMO_STUDENT, fleet=fleet))
    assert config.fleet.broker_port == 8883 and config.fleet.tls.ca == str(tmp_path / "ca.pem")
    assert config.fleet.image_base_url == "https://st7.plant:8080"
    os.environ.pop("MQTT_PW", None)
    with pytest.raises(UserError, match="MQTT_PW is not set"):
        config.fleet.password()

    for bad, message in (
        ({**fleet, "qos": 2}, "fleet.qos: unknown key"),
        ({**fleet, "site": "a/b"}, "fleet.site: Value error|fleet.site: .*topic level"),
        ({**fleet, "username": None}, "fleet.username: a password needs a username"),
        ({**fleet, "tls": {"ca": "missing.pem"}}, "fleet.tls.ca: no such file missing.pem"),
    ):
        path = write_station(tmp_path, DEMO_STUDENT, fleet=bad)
        with pytest.raises(ConfigError) as err:
            load_config(path)
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("fleet:"))
        problem = err.value.problems[0]
        assert problem.startswith(f"{path}:"), problem
        assert int(problem.split(":")[1]) > line, problem  # the offending key's own line, below `fleet:`
        import re

        assert re.search(message, problem), problem


# -- the outbox -----------------------------------------------------------------------------------
def test_outbox_row_commits_with_its_inspection(tmp_path):
    store = Store(tmp_path, save_pass_every=1)
    outbox = attach_outbox(store, Topics("edge-inspect", "p", "l", "s"), "http://s:8080")
    row_id = store.record(_record(1, Verdict.FAIL), FRAME)
    ((msg_id, kind, payload),) = store.conn.execute("select msg_id, kind, payload from outbox").fetchall()
    body = json.loads(payload)
    assert kind == "inspection" and body["id"] == msg_id and body["inspection_id"] == row_id
    assert body["checks"][0]["points"] == [[0.5, 0.5]] and body["verdict"] == "FAIL"
    assert body["image"]["url"] == f"http://s:8080/api/inspections/{row_id}/image"
    assert outbox.count == 1

    # The outbox insert fails (in SQLite, on the store's own connection): the inspection must not commit
    # without its message; it waits in memory and is written with it once the outbox takes it.
    store.conn.execute(
        "CREATE TEMP TRIGGER outbox_refuses BEFORE INSERT ON main.outbox "
        "BEGIN SELECT RAISE(ABORT, 'message could not be made'); END"
    )
    with pytest.raises(StoreError, match="message could not be made"):
        store.record(_record(2, Verdict.PASS), None)
    assert store.conn.execute("select count(*) from inspections").fetchone()[0] == 1
    assert store.conn.execute("select count(*) from outbox").fetchone()[0] == 1
    store.conn.execute("DROP TRIGGER temp.outbox_refuses")
    assert store.flush_pending() == 1
    assert store.conn.execute("select count(*) from inspections").fetchone()[0] == 2
    assert store.conn.execute("select count(*) from outbox").fetchone()[0] == 2

    store.enforce_retention(now=10**10)  # retention deletes inspections, never undelivered messages
    assert store.count() == 0 and store.conn.execute("select count(*) from outbox").fetchone()[0] == 2
    store.close()


def test_broker_down_then_delivered_in_order_and_outbox_budget(tmp_path, postgres):
    dsn = postgres.database("fleet_order")
    broker = Mosquitto(tmp_path)
    store = Store(tmp_path / "data", save_pass_every=0)
    topics = Topics("edge-inspect", "plant", "line1", "st1")
    outbox = attach_outbox(store, topics)
    settings = BrokerSettings.from_url(broker.url)
    alarms = []
    publisher = Publisher(
        outbox,
        topics,
        settings,
        "st1",
        confirm_timeout_s=2,
        offline_alarm_s=0.5,
        on_alarm=lambda code, message: alarms.append((code, message)),
    )
    publisher.set_status({"alarms": []})
    publisher.start()
    collector = Collector(settings, dsn)
    runner = threading.Thread(target=collector.run, daemon=True)
    try:
        for i in range(40):  # the broker is down: everything waits in the outbox
            store.record(_record(i, Verdict.PASS if i % 4 else Verdict.FAIL), None)
        wait_for(
            lambda: ("fleet_offline", None) not in alarms and any(c == "fleet_offline" for c, _ in alarms),
            "the offline alarm",
        )
        assert outbox.count == 40
        broker.start()
        runner.start()
        for i in range(40, 60):
            store.record(_record(i, Verdict.PASS), None)
            publisher.wake()
        wait_for(lambda: outbox.count == 0, "the outbox to empty")
        rows = _rows(dsn, "select inspection_id from inspections order by ingest_seq")
        assert [r[0] for r in rows] == list(range(1, 61))  # each once, in the order they were logged
        assert alarms[-1] == ("fleet_offline", None)
        online = _rows(dsn, "select online from stations")
        assert online == [(True,)]
    finally:
        publisher.stop()
        collector.stop()
        runner.join(10) if runner.is_alive() else None
        broker.stop()
    # The disk budget: beyond it the oldest messages go, with an audit row and an alarm.
    small = Publisher(
        outbox,
        topics,
        BrokerSettings("127.0.0.1", free_port()),
        "st1",
        outbox_max_bytes=5000,
        on_alarm=lambda code, message: alarms.append((code, message)),
    )
    for i in range(20):
        store.record(_record(100 + i, Verdict.PASS), None)
    small._check_budget()
    assert 0 < outbox.bytes <= 5000 and outbox.dropped > 0
    audit = store.conn.execute("select detail from audit where action = 'fleet_outbox_dropped'").fetchall()
    assert len(audit) == 1 and f'"dropped": {outbox.dropped}' in audit[0][0]
    assert alarms[-1][0] == "fleet_backlog" and "dropped" in alarms[-1][1]
    store.close()


# -- faults with the real daemon and the real collector ----------------------------------------------
def _logged(db: Path) -> list[int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [r[0] for r in conn.execute("select id from inspections order by id")]


def _exactly_once(dsn: str, db: Path) -> bool:
    # PostgreSQL first, the log second: a station that is still running logs and publishes between the two
    # reads, and an inspection stored after a log read taken first would look like one the log does not
    # have. Everything stored was logged before it was published.
    stored = [r[0] for r in _rows(dsn, "select inspection_id from inspections order by inspection_id")]
    logged = _logged(db)
    assert len(stored) == len(set(stored)), "an inspection is in PostgreSQL twice"
    assert set(stored) <= set(logged), "PostgreSQL has an inspection the log does not"
    return stored == logged


def test_faults_end_with_every_inspection_in_postgres_exactly_once(tmp_path, postgres):
    dsn = postgres.database("fleet_faults")
    broker = Mosquitto(tmp_path).start()
    token = "station-token-" + "x" * 20
    (tmp_path / "token").write_text(token + "\n")
    web_port = free_port()
    config = write_station(
        tmp_path,
        DEMO_STUDENT,
        plc={"enabled": False},
        triggers={"plc": False, "interval_s": 0.05},
        storage={"dir": str(tmp_path / "data"), "save_pass_every": 5},
        web={"enabled": True, "port": web_port, "open_view": False},
        fleet={
            "host": "127.0.0.1",
            "port": broker.port,
            "site": "plant",
            "line": "l1",
            "confirm_timeout_s": 2,
            "image_base_url": f"http://127.0.0.1:{web_port}",
            "image_token_file": "token",
        },
    )
    (tmp_path / "tokens.yaml").write_text(
        yaml.safe_dump({"plant/l1/test-station": {"url": f"http://127.0.0.1:{web_port}", "token": token}})
    )
    db = tmp_path / "data" / "inspections.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def station():
        return subprocess.Popen(
            [sys.executable, "-m", "edge_inspect.cli", "run", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "station.err", "ab"),
        )

    def collector():
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge_inspect.cli",
                "fleet",
                "collect",
                "--broker",
                broker.url,
                "--db",
                dsn,
                "--images",
                str(tmp_path / "images"),
                "--station-tokens",
                str(tmp_path / "tokens.yaml"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "collector.err", "ab"),
        )

    def logged_count() -> int:
        return len(_logged(db)) if db.exists() else 0

    def stored_count() -> int:
        return _rows(dsn, "select count(*) from inspections")[0][0] if _has_tables() else 0

    def _has_tables() -> bool:
        return _rows(dsn, "select to_regclass('inspections') is not null")[0][0]

    def settle(what: str) -> None:
        """Wait until every inspection logged so far is in PostgreSQL (and none twice)."""
        wait_for(lambda: _exactly_once(dsn, db), f"every logged inspection in PostgreSQL after {what}", every=0.2)

    procs = {"collector": collector(), "station": station()}
    try:
        wait_for(lambda: stored_count() >= 3, "the first inspections in PostgreSQL", every=0.2)

        # 1. The broker dies mid-burst (kill -9, no persistence: what it held is gone) and comes back.
        broker.kill9()
        before = logged_count()
        wait_for(lambda: logged_count() >= before + 5, "inspections logged while the broker is down", every=0.1)
        broker.start()
        n = logged_count()
        wait_for(lambda: stored_count() >= n, "delivery after the broker's restart", every=0.2)
        _exactly_once(dsn, db)

        # 2. The collector dies (kill -9) while the station keeps logging, and starts again.
        procs["collector"].send_signal(signal.SIGKILL)
        procs["collector"].wait()
        before = logged_count()
        wait_for(lambda: logged_count() >= before + 5, "inspections logged while the collector is down", every=0.1)
        procs["collector"] = collector()
        n = logged_count()
        wait_for(lambda: stored_count() >= n, "delivery after the collector's restart", every=0.2)
        _exactly_once(dsn, db)

        # 3. The station dies (kill -9) mid-burst, twice, and starts again.
        for _ in range(2):
            before = stored_count()
            wait_for(
                lambda before=before: stored_count() >= before + 2,
                "inspections flowing before the station's kill",
                every=0.1,
            )
            procs["station"].send_signal(signal.SIGKILL)
            procs["station"].wait()
            wait_for(
                lambda: _rows(dsn, "select status->>'reason' from stations") == [("connection lost",)],
                "the broker's last will (retained offline status) in PostgreSQL",
                every=0.1,
            )
            ((will,),) = _rows(dsn, "select status from stations")  # written at connect time: says so
            assert "at" not in will and will["connected_at"] > 1e9 and will["online"] is False
            procs["station"] = station()
        before = logged_count()
        wait_for(lambda: logged_count() >= before + 3, "the restarted station logging", every=0.1)
        # Images come from the running station's API, with its token (the API refuses anyone else).
        wait_for(
            lambda: _rows(dsn, "select count(*) from inspections where image_state = 'done'")[0][0] >= 2,
            "images fetched",
            every=0.2,
        )
        for sha, overlay in _rows(
            dsn, "select image_sha256, overlay_sha256 from inspections where image_state = 'done'"
        ):
            for digest in (sha, overlay):
                data = (tmp_path / "images" / digest[:2] / digest[2:4] / f"{digest}.jpg").read_bytes()
                assert hashlib.sha256(data).hexdigest() == digest and data[:2] == b"\xff\xd8"
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/inspections/1/image")
        assert refused.value.code == 401
        procs["station"].send_signal(signal.SIGTERM)
        assert procs["station"].wait(60) == 0, (tmp_path / "station.err").read_text()[-2000:]
        settle("the station's kill -9 and restart")
        assert len(_logged(db)) > 20

        # The station's retained status says offline after its clean stop.
        wait_for(lambda: _rows(dsn, "select online from stations") == [(False,)], "the offline status")
        with sqlite3.connect(db) as conn:  # what is left unconfirmed is already stored: sent again, it changes nothing
            left = {r[0] for r in conn.execute("select msg_id from outbox")}
        assert left <= {str(r[0]) for r in _rows(dsn, "select msg_id from inspections")}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        broker.stop()


# -- the fleet page -------------------------------------------------------------------------------
class _NoBroker:
    def ack(self, mid, qos):
        pass

    def publish(self, *args, **kwargs):
        pass


def _fill(dsn: str, tmp_path: Path) -> None:
    """Messages as the stations send them, through the collector's own write path (no broker)."""
    collector = Collector(BrokerSettings("127.0.0.1"), dsn, client=_NoBroker())
    collector.check_database()
    items = []
    for name in ("st1", "st2"):
        store = Store(tmp_path / name, save_pass_every=0)
        topics = Topics("edge-inspect", "plant", "l1", name)
        attach_outbox(store, topics)
        for i in range(6):
            store.record(_record(i, Verdict.FAIL if (i == 0 or name == "st2" and i < 3) else Verdict.PASS), None)
        for (payload,) in store.conn.execute("select payload from outbox order by seq"):
            items.append((topics.of("inspection"), payload.encode(), 0, 1))
        status = {"v": 1, "type": "status", "online": name == "st1", "at": 1e10}
        if name == "st1":
            status["alarms"] = []  # the station's own board: nothing active
            status["model"] = "7db2cd7d1845"  # the version it runs, and the alias it follows
            status["model_follow"] = {"alias": "production", "state": "watching"}
            status["shadow"] = {"state": "running", "version": "8fde78a6d44b", "shadowed": 120, "skipped": 3,
                                "disagreements": 3, "agreement": 0.975}  # fmt: skip
        items.append((topics.of("status"), dumps(status).encode(), 0, 1))
        store.close()
    # The same inspection in a message made anew (another id): stored once all the same.
    again = {**json.loads(items[0][1]), "id": "5b3c8f0e-1111-4a8e-9a55-4f1c2a8b9c02"}
    items.append((items[0][0], dumps(again).encode(), 0, 1))
    alarm = {
        "v": 1,
        "type": "alarm",
        "id": "7d0e5e4a-8d2c-4a8e-9a55-4f1c2a8b9c01",
        "event": "raised",
        "code": "camera_lost",
        "message": "no frame for 2 s",
        "at": 1.7e9,
    }
    items.append(("edge-inspect/plant/l1/st2/alarm", dumps(alarm).encode(), 0, 1))
    stale = {**alarm, "id": "7d0e5e4a-8d2c-4a8e-9a55-4f1c2a8b9c03", "code": "fleet_offline", "message": "old run"}
    items.append(("edge-inspect/plant/l1/st1/alarm", dumps(stale).encode(), 0, 1))  # raised, never cleared
    st3 = {
        "v": 1,
        "type": "status",
        "online": True,
        "at": 1.7e9,
        "alarms": [
            {"code": "plc_absent", "message": "no PLC", "since": 1.69e9, "active": True, "acknowledged": False},
            {"code": "disk_low", "message": "disk", "since": 1.69e9, "active": False, "acknowledged": False},
        ],
    }
    items.append(("edge-inspect/plant/l1/st3/status", dumps(st3).encode(), 0, 1))
    will = {"v": 1, "type": "status", "online": False, "reason": "connection lost", "connected_at": 1.69e9}
    with psycopg.connect(dsn) as conn:
        collector.write(conn, items)
        collector.write(conn, items)  # everything again: nothing changes
        collector.write(conn, [("edge-inspect/plant/l1/st3/status", dumps(will).encode(), 0, 1)])
    assert _rows(dsn, "select count(*) from inspections")[0][0] == 12


def test_fleet_serve_pages_roles_filters_csv(tmp_path, postgres):
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from edge_inspect.config import WebUser
    from edge_inspect.http.auth import hash_password
    from edge_inspect.plant.app import build_app

    dsn = postgres.database("fleet_serve")
    _fill(dsn, tmp_path)
    users = [WebUser(name="quality", role="qa", password_hash=hash_password("secret-qa"))]
    client = TestClient(build_app(dsn, users))
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert client.get("/api/inspections.csv").status_code == 401
    assert client.post("/login", data=login_fields_sync(client, "quality", "wrong")).status_code == 401
    r = client.post("/login", data=login_fields_sync(client, "quality", "secret-qa", next="/"), follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/").text
    assert "plant/l1/st1" in page and "plant/l1/st2" in page and "/static/app.css" in page
    assert "camera_lost" in page and "online" in page and "offline" in page
    assert "<code>7db2cd7d1845</code> (production: watching)" in page
    stations = {s["station_key"]: s for s in client.get("/api/stations").json()}
    shadow = "shadow 8fde78a6d44b: 120 parts, agreement 97.5 %, 3 skipped"
    assert shadow in page
    assert stations["plant/l1/st1"]["model"] == {
        "version": "7db2cd7d1845", "alias": "production", "state": "watching", "shadow": shadow
    }  # fmt: skip
    assert stations["plant/l1/st2"]["model"] is None
    assert stations["plant/l1/st2"]["alarms"][0]["code"] == "camera_lost"  # no list in its status: the events
    assert stations["plant/l1/st1"]["alarms"] == []  # its status lists none: a raise from an old run is not active
    assert [a["code"] for a in stations["plant/l1/st3"]["alarms"]] == ["plc_absent"]  # as before its last will
    assert not stations["plant/l1/st3"]["online"]
    assert stations["plant/l1/st1"]["online"] and not stations["plant/l1/st2"]["online"]
    review = client.get("/review", params={"station": "plant/l1/st2", "verdict": "FAIL"}).text
    assert review.count('class="open"') == 3
    assert client.get("/review", params={"verdict": "MAYBE"}).status_code == 400
    msg_id = _rows(dsn, "select msg_id from inspections where station_key = 'plant/l1/st1' and verdict = 'FAIL'")[0][0]
    detail = client.get(f"/review/{msg_id}").text
    assert "surface" in detail and "(0.500, 0.500)" in detail
    assert client.get("/review/not-a-uuid").status_code == 404
    lines = client.get("/api/inspections.csv", params={"check": "surface"}).text.strip().splitlines()
    assert lines[0].startswith("station_key,inspection_id") and len(lines) == 1 + 4

    # HTTP Basic for scripts (GETs), with the station's rate limit on failed logins (a cheap scrypt hash here).
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    cheap = hashlib.scrypt(b"pw-script", salt=salt, n=1024, r=8, p=1, dklen=32)
    script_user = WebUser(
        name="script",
        role="qa",
        password_hash=f"scrypt$1024$8$1${base64.b64encode(salt).decode()}${base64.b64encode(cheap).decode()}",
    )
    script = TestClient(build_app(dsn, [script_user]))
    r = script.get("/api/inspections.csv", params={"check": "surface"}, auth=("script", "pw-script"))
    assert r.status_code == 200 and r.text.strip().splitlines() == lines
    assert script.get("/review", auth=("script", "pw-script")).status_code == 200
    assert script.get("/api/stations", auth=("script", "wrong")).status_code == 401
    codes = [script.get("/api/stations", auth=("script", "wrong")).status_code for _ in range(5)]
    assert codes[-1] == 429 and 401 in codes
    assert script.get("/api/stations", auth=("script", "pw-script")).status_code == 429  # until the minute is over


def test_fleet_serve_users_file_shapes(tmp_path):
    from edge_inspect.http.auth import hash_password
    from edge_inspect.plant.users import load_users

    user = {"name": "qa", "role": "qa", "password_hash": hash_password("pw-qa")}
    for shape in ([user], {"users": [user]}, {"station": {"name": "x"}, "web": {"port": 8080, "users": [user]}}):
        (tmp_path / "users.yaml").write_text(yaml.safe_dump(shape))
        assert [u.name for u in load_users(tmp_path / "users.yaml")] == ["qa"]
    for shape, message in (
        ({"users": [{**user, "role": "boss"}]}, r"users\.0\.role: "),
        ({"web": {"users": [{"name": "qa", "role": "qa"}]}}, r"web\.users\.0\.password_hash: "),
        ([{**user, "nmae": "x"}], r": 0\.nmae: "),
        ({"people": []}, r"expected a list of users, a mapping with users:"),
    ):
        (tmp_path / "users.yaml").write_text(yaml.safe_dump(shape))
        with pytest.raises(UserError, match=message):
            load_users(tmp_path / "users.yaml")


def test_migration_makes_station_and_inspection_id_unique(postgres):
    from edge_inspect.plant import pg_schema

    dsn = postgres.database("fleet_migrate")
    with psycopg.connect(dsn) as conn:  # a database of schema 1 with one inspection stored twice
        with conn.transaction():
            pg_schema.MIGRATIONS[0](conn)
            conn.execute(
                "CREATE TABLE fleet_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL "
                "DEFAULT now()); INSERT INTO fleet_schema (version) VALUES (1)"
            )
            conn.execute("INSERT INTO stations (station_key, site, line, station) VALUES ('p/l/s', 'p', 'l', 's')")
            for i, msg_id in enumerate(
                ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
            ):
                conn.execute(
                    "INSERT INTO inspections (msg_id, station_key, inspection_id, ts, verdict) "
                    "VALUES (%s, 'p/l/s', 7, now(), 'PASS')",
                    [msg_id],
                )
                conn.execute("INSERT INTO checks (msg_id, idx, name) VALUES (%s, 0, %s)", [msg_id, f"c{i}"])
        assert pg_schema.migrate(conn) == (1, pg_schema.LATEST)
        assert conn.execute("SELECT msg_id::text, inspection_id FROM inspections").fetchall() == [
            ("00000000-0000-4000-8000-000000000001", 7)
        ]  # the first stored stays, with its checks
        assert conn.execute("SELECT name FROM checks").fetchall() == [("c0",)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO inspections (msg_id, station_key, inspection_id, ts, verdict) "
                "VALUES ('00000000-0000-4000-8000-000000000003', 'p/l/s', 7, now(), 'PASS')"
            )


def test_fleet_commands_report_user_errors_in_one_line(tmp_path):
    for args in (
        ["fleet", "collect", "--db", "postgresql://nobody@127.0.0.1:1/none"],
        ["fleet", "collect", "--broker", "http://x", "--db", "postgresql://x"],
        ["fleet", "serve", "--db", "postgresql://x"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "edge_inspect.cli", *args], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_a_silent_broker_never_delays_the_plc_handshake(tmp_path):
    """The broker accepts TCP and never answers (no CONNACK): the PLC's cycles complete as always, every
    result is logged with its message waiting in the outbox, and the publisher is simply not connected."""
    import asyncio
    import socket

    from ..support.stations import run_station_with_plc

    silent = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])  # held open, never read
            except TimeoutError:
                pass

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    config = write_station(
        tmp_path,
        DEMO_STUDENT,
        fleet={"host": "127.0.0.1", "port": silent.getsockname()[1], "site": "plant", "line": "l1"},
    )
    left = Store(tmp_path / "data", save_pass_every=0)  # a previous run ended (kill -9) with alarms open
    for code in ("plc_absent", "fleet_offline"):
        alarm_history.raised(left, code, "from the previous run", at=1000.0)
    left.close()

    async def scenario(station, plc):
        results = [await plc.cycle(trigger_id=i, part_id=f"P{i}") for i in range(1, 6)]
        return results, station.attached(FleetLink).publisher.connected, station.attached(FleetLink).outbox.count

    try:
        results, connected, waiting = asyncio.run(run_station_with_plc(config, scenario))
    finally:
        stop.set()
        acceptor.join()
        for conn in accepted:
            conn.close()
        silent.close()
    assert [r.result_id for r in results] == [1, 2, 3, 4, 5] and all(r.error_code in (0, 1) for r in results)
    assert accepted and not connected and waiting >= 5  # alarm messages may wait too
    with sqlite3.connect(tmp_path / "data" / "inspections.db") as conn:
        assert conn.execute("select count(*) from inspections").fetchone()[0] == 5
        assert conn.execute("select count(*) from outbox where kind = 'inspection'").fetchone()[0] == 5
        closed = conn.execute("select code, cleared_at from alarms where raised_at = 1000").fetchall()
        assert sorted(c for c, _ in closed) == ["fleet_offline", "plc_absent"] and all(t > 1000 for _, t in closed)
        sent = [json.loads(p) for (p,) in conn.execute("select payload from outbox where kind = 'alarm'")]
    clears = {m["code"] for m in sent if m["event"] == "cleared"}
    assert {"plc_absent", "fleet_offline"} <= clears, sent


@pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
    reason="openssl and mosquitto_passwd are needed for a TLS broker with passwords",
)
def test_tls_and_password_to_the_broker(tmp_path, postgres, caplog):
    caplog.set_level("INFO", logger="edge_inspect.fleet")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "st1", "pw-st1"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "collector", "pw-col"], check=True)
    broker = Mosquitto(
        tmp_path, extra=f"cafile {cert}\ncertfile {cert}\nkeyfile {key}\npassword_file {tmp_path / 'passwd'}\n"
    )
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    broker.start()
    dsn = postgres.database("fleet_tls")
    store = Store(tmp_path / "data", save_pass_every=0)
    topics = Topics("edge-inspect", "plant", "l1", "st1")
    outbox = attach_outbox(store, topics)
    url = f"mqtts://127.0.0.1:{broker.port}"
    alarms = []
    wrong = Publisher(
        outbox,
        topics,
        BrokerSettings.from_url(url, ca=str(cert), username="st1", password="nope"),
        "x",
        offline_alarm_s=0.3,
        on_alarm=lambda code, message: alarms.append((code, message)),
    )
    publisher = Publisher(
        outbox,
        topics,
        BrokerSettings.from_url(url, ca=str(cert), username="st1", password="pw-st1"),
        "st1",
        confirm_timeout_s=2,
    )
    collector = Collector(BrokerSettings.from_url(url, ca=str(cert), username="collector", password="pw-col"), dsn)
    runner = threading.Thread(target=collector.run, daemon=True)
    try:
        runner.start()
        wrong.start()
        for i in range(5):
            store.record(_record(i, Verdict.PASS), None)
        wait_for(
            lambda: "not authorised" in (tmp_path / "mosquitto.log").read_text(), "the broker to refuse a bad password"
        )
        # Refused again and again: the wait between attempts doubles (no reconnect storm), the refusal is
        # logged once, and the offline alarm names the reason.
        wait_for(
            lambda: wrong.retry_in_s >= 4.0, "the wait after refused attempts to double (0.5, 1, 2, 4 s)", timeout=30
        )
        assert wrong.stats["refused"] >= 3
        assert not wrong.connected and wrong.stats["connects"] == 0
        assert "refused the connection: not authorized: check fleet.username / password" in wrong.problem
        offline = [m for c, m in alarms if c == "fleet_offline"]
        assert offline and "not authorized: check fleet.username / password" in offline[-1], alarms
        refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].levelname == "WARNING", [r.getMessage() for r in refusals]
        wrong.stop()
        publisher.start()
        wait_for(lambda: outbox.count == 0, "delivery over TLS with a password")
        assert _rows(dsn, "select count(*) from inspections")[0][0] == 5
    finally:
        publisher.stop()
        collector.stop()
        runner.join(10)
        broker.stop()
        store.close()
