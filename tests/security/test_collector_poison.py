"""The collector never dies on a message: 10,000 fuzzed and hand-made poison messages through a real
Mosquitto, then a normal burst — every poison message is kept as a dead letter with its reason, every
valid inspection is in PostgreSQL exactly once, and the collector still runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid

import pytest

from edge_inspect.fleet.link import attach_outbox
from edge_inspect.fleet.messages import Topics
from edge_inspect.logbook import Store
from edge_inspect.verdict import Verdict

from ..support.fleet_services import Mosquitto
from ..support.records import record
from ..support.wait import wait_for

psycopg = pytest.importorskip("psycopg")
paho = pytest.importorskip("paho.mqtt.client")

HAND_MADE = [  # (field, value) that the station's own schema refuses
    ("recipe", True),
    ("recipe", "x"),
    ("recipe", 1.5),
    ("recipe", -1),
    ("recipe", 70000),
    ("recipe", [1]),
    ("inspection_id", 0),
    ("inspection_id", 2**64),
    ("inspection_id", "7"),
    ("inspection_id", None),
    ("ts_unix", "now"),
    ("ts_unix", True),
    ("ts_unix", -5.0),
    ("ts_unix", 1e300),
    ("verdict", "OK"),
    ("verdict", None),
    ("part_id", 12),
    ("part_id", "a\u0000b"),
    ("part_id", "\ud800"),
    ("part_id", "x" * 5000),
    ("defect_count", -1),
    ("defect_count", False),
    ("failed_checks", 2**70),
    ("checks", "none"),
    ("checks", [{"idx": "0"}]),
    ("checks", [{"idx": 0, "name": "a", "kind": "qa", "status": "pass", "p_yes": "0.5"}]),
    ("checks", [{"idx": 0, "name": "a", "kind": "qa", "status": "pass", "points": [[1, 2, 3]]}]),
    ("timings_ms", [1, 2]),
    ("timings_ms", {"a": "1"}),
    ("image", "http://x"),
    ("image", {"url": 5}),
    ("id", "not-a-uuid"),
    ("id", 5),
    ("v", 2),
    ("v", "1"),
    ("type", "alarm"),
]
BAD_VALUES = [True, False, "1", "", None, -1, 2**63, 1e309, [], {}, [None], {"a": 1}, "\u0000", 1.5]
FIELDS_NOT_NULL = {"id": ("not-a-uuid", 5), "inspection_id": (0, -3), "ts_unix": ("x",), "verdict": ("maybe", 3)}


def _template(n: int) -> dict:
    return {
        "v": 1,
        "type": "inspection",
        "id": str(uuid.UUID(int=n)),
        "inspection_id": n + 1,
        "result_id": n,
        "ts_unix": 1.7e9,
        "recipe": 1,
        "recipe_name": "plate",
        "part_id": "P",
        "trigger": "plc",
        "verdict": "PASS",
        "error": "",
        "defect_count": 0,
        "failed_checks": 0,
        "checks": [],
        "timings_ms": {"cycle_ms": 1.0},
        "model_sha256": "m",
        "config_sha256": "c",
        "image": None,
    }


def poison_messages(count: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(kind, raw) pairs, each refused by the schema: hand-made first, then fuzzed mutations."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for i, (field, value) in enumerate(HAND_MADE):
        out.append(("inspection", json.dumps({**_template(10**6 + i), field: value}).encode()))
    out += [
        ("inspection", b"not json"),
        ("inspection", b'{"v": 1, "type": "inspection"'),
        ("inspection", b"[]"),
        ("inspection", b"NaN"),
        ("inspection", b"\xff\xfe\xfd"),
        ("status", b'{"v": 1, "type": "status"}'),
        (
            "alarm",
            json.dumps({"v": 1, "type": "alarm", "id": str(uuid.uuid4()), "event": "exploded", "code": "x"}).encode(),
        ),
        ("inspection", b"[" * 100_000 + b"]" * 100_000),
        # passes the schema (extra keys are ignored) but PostgreSQL's jsonb refuses \u0000: kept one by one
        ("status", json.dumps({"v": 1, "type": "status", "online": True, "at": 1.7e9, "note": "a\u0000b"}).encode()),
        ("inspection", json.dumps({**_template(2 * 10**6), "error": "x" * (2 << 20)}).encode()),
    ]  # oversize
    required = ["id", "inspection_id", "ts_unix", "verdict", "v", "type"]
    while len(out) < count:
        body = _template(3 * 10**6 + len(out))
        how = rng.randrange(4)
        if how == 0:  # a required field missing
            del body[rng.choice(required)]
        elif how == 1:  # a typed field with a value of the wrong type or out of range
            field = rng.choice(["recipe", "inspection_id", "result_id", "defect_count", "failed_checks", "ts_unix"])
            body[field] = rng.choice(
                [
                    v
                    for v in BAD_VALUES
                    if v is not None or field in FIELDS_NOT_NULL or field in ("inspection_id", "ts_unix")
                ]
            )
            if body[field] == 1.5 and field == "ts_unix":
                body[field] = "1.5"
        elif how == 2:  # a field of a check with the wrong type
            body["checks"] = [
                {
                    "idx": 0,
                    "name": "a",
                    "kind": "qa",
                    "status": "pass",
                    rng.choice(["counted", "p_yes", "margin", "ms", "idx"]): rng.choice(["x", True, [], {}]),
                }
            ]
        else:  # the bytes cut short or damaged
            raw = json.dumps(body).encode()
            cut = rng.randrange(1, len(raw) - 1)
            out.append(("inspection", raw[:cut] + (b"\x00" if rng.random() < 0.5 else b"")))
            continue
        out.append(("inspection", json.dumps(body).encode()))
    return out[:count]


def test_poison_messages_never_stop_the_collector(tmp_path, postgres):
    dsn = postgres.database("poison")
    broker = Mosquitto(tmp_path).start()
    collector = subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "fleet", "collect", "--broker", broker.url, "--db", dsn],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "collector.err", "wb"),
    )
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="attacker")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:

            def count(sql: str) -> int:
                try:
                    return conn.execute(sql).fetchone()[0]
                except psycopg.errors.UndefinedTable:
                    return -1

            wait_for(lambda: count("select count(*) from dead_letters") == 0, "the collector's tables")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            poison = poison_messages(10_000)
            for n, (kind, raw) in enumerate(poison):
                client.publish(f"edge-inspect/plant/l1/evil{n % 7}/{kind}", raw, qos=1).wait_for_publish(10)
            wait_for(
                lambda: count("select count(*) from dead_letters") == len(poison),
                "every poison message kept",
                timeout=300,
                every=0.5,
            )
            # A normal burst after it: every valid inspection stored exactly once.
            store = Store(tmp_path / "station", save_pass_every=0)
            topics = Topics("edge-inspect", "plant", "l1", "good")
            attach_outbox(store, topics)
            for i in range(200):
                store.record(record(i, Verdict.FAIL if i % 10 == 0 else Verdict.PASS), None)
            payloads = [p for (p,) in store.conn.execute("select payload from outbox order by seq")]
            store.close()
            for payload in payloads + payloads[:20]:  # 20 sent twice
                client.publish(topics.of("inspection"), payload, qos=1).wait_for_publish(10)
            wait_for(
                lambda: count("select count(*) from inspections where station_key = 'plant/l1/good'") == 200,
                "the normal burst in PostgreSQL",
                timeout=120,
                every=0.2,
            )
            assert count("select count(distinct inspection_id) from inspections") == 200
            assert count("select count(*) from dead_letters") == len(poison)
            reasons = [
                r
                for (r,) in conn.execute(
                    "select reason from dead_letters where raw = %s",
                    [json.dumps({**_template(10**6), "recipe": True}).encode()],
                )
            ]
            assert reasons == ["recipe: Input should be a valid integer (got True)"]
            assert count("select max(size) from dead_letters") > 2 << 20  # the oversize one, its size kept
            assert count("select count(*) from dead_letters where reason like 'database refused it:%'") == 1
        assert collector.poll() is None, (tmp_path / "collector.err").read_text()[-2000:]
        from starlette.testclient import TestClient

        from edge_inspect.plant.app import build_app

        plant = TestClient(build_app(dsn, [], open_view=True))
        assert f"could not store: {len(poison)}" in plant.get("/").text
        assert f"edge_inspect_fleet_dead_letters {len(poison)}" in plant.get("/metrics").text
        assert plant.get("/api/dead-letters").json()["count"] == len(poison)
    finally:
        client.loop_stop()
        client.disconnect()
        collector.terminate()
        collector.wait(20)
        broker.stop()
    assert collector.returncode == 0
