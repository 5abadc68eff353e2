"""`edge-inspect fleet collect`: the broker's station topics into PostgreSQL (docs/fleet.md).

One MQTT session that the broker keeps while the collector is away (clean_session false, fixed
client id), messages acknowledged to the broker only after their rows are committed (manual ack),
and a confirmation per station on ``…/ack`` so the station can drop them from its outbox. Rows are
upserted on the message id: a message that comes again changes nothing. Images named by the
inspections are fetched from the stations' APIs by a thread of their own into a content-addressed
store; a station that cannot be reached is retried with backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from psycopg.types.json import Jsonb

from ..errors import UserError
from ..fleet.messages import dumps, parse_topic
from ..fleet.mqtt import BrokerSettings, make_client
from ..fleet.schema import MessageRefused, parse_message
from . import pg_schema
from .images import FetchError, ImageStore, fetch, origin
from .reviews import ReviewRows

log = logging.getLogger(__name__)
DEAD_LETTER_BYTES = 1 << 20  # the raw bytes kept of a refused message


@dataclass(frozen=True)
class StationAccess:
    url: str  # the station's API base (http/https): its images are fetched from this origin only
    token: str | None = None  # sent to that origin only


def load_tokens(path: str | Path) -> dict[str, StationAccess]:
    """``site/line/station: {url: https://HOST:PORT, token: TOKEN}`` for each station whose images the
    collector fetches (YAML or JSON). Every station has its own origin; there is no wildcard."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not YAML: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of site/line/station to {{url, token}}")
    found = {}
    for key, value in data.items():
        key = str(key)
        if key == "*" or key.count("/") != 2 or not all(key.split("/")):
            raise UserError(
                f"{path}: {key!r}: name one station as site/line/station (a token for every "
                "station would be sent wherever a message points)"
            )
        if not isinstance(value, dict) or not set(value) <= {"token", "url"} or not isinstance(value.get("url"), str):
            raise UserError(
                f"{path}: {key}: expected {{url: https://HOST:PORT, token: TOKEN}} (the station's "
                "origin is pinned here, never taken from its messages)"
            )
        token = value.get("token")
        if token is not None and not isinstance(token, str):
            raise UserError(f"{path}: {key}: token: expected a string")
        url = value["url"].rstrip("/")
        if origin(url) is None or urllib.parse.urlsplit(url).path not in ("", "/"):
            raise UserError(f"{path}: {key}: url: {value['url']!r} is not http(s)://HOST[:PORT] (no path)")
        found[key] = StationAccess(url, token)
    return found


def _ts(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, timezone.utc) if isinstance(unix, int | float) else None


@dataclass
class _Batch:
    stations: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    seen: dict[str, datetime] = field(default_factory=dict)
    inspections: list[tuple] = field(default_factory=list)
    checks: list[tuple] = field(default_factory=list)
    alarms: list[tuple] = field(default_factory=list)
    reviews: ReviewRows = field(default_factory=ReviewRows)
    status: dict[str, tuple] = field(default_factory=dict)
    confirm: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # topic base -> ids
    dead: list[tuple] = field(default_factory=list)  # (topic, station key, reason, raw bytes kept, size)


class Collector:
    def __init__(
        self,
        broker: BrokerSettings,
        dsn: str,
        prefix: str = "edge-inspect",
        client_id: str = "edge-inspect-collector",
        images: ImageStore | None = None,
        tokens: dict[str, StationAccess] | None = None,
        batch: int = 500,
        batch_ms: float = 50.0,
        client: paho.Client | None = None,
    ):
        """``client``: the MQTT client that run() connects and that acknowledges and confirms each stored
        batch (None: run() makes it from ``broker``); batches stored by ``write`` alone (tests, no
        broker) take a stand-in with ``ack`` and ``publish``."""
        self.broker, self.dsn, self.prefix, self.client_id = broker, dsn, prefix, client_id
        self.images, self.tokens = images, tokens or {}
        self.batch, self.batch_s = batch, batch_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._image_wake = threading.Event()
        self._client = client
        self.connected = threading.Event()
        self.stats = {"messages": 0, "inspections": 0, "duplicates": 0, "dead_letters": 0, "images": 0, "reviews": 0}

    # -- MQTT --------------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("collector: broker %s refused the connection: %s", self.broker.where(), reason_code)
            return
        client.subscribe([(f"{self.prefix}/+/+/+/{kind}", 1) for kind in ("inspection", "alarm", "review", "status")])
        self.connected.set()
        log.info("collector: subscribed on %s", self.broker.where())

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("collector: lost the broker %s (%s); reconnecting", self.broker.where(), reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self._queue.put((message.topic, message.payload, message.mid, message.qos))

    # -- the run ------------------------------------------------------------------------------------
    def check_database(self) -> None:
        """Connect and migrate (raises psycopg.Error or pg_schema.SchemaError)."""
        with psycopg.connect(self.dsn, connect_timeout=10) as conn:
            before, after = pg_schema.migrate(conn)
            if before != after:
                log.info("collector: database migrated from schema %d to %d", before, after)

    def stop(self) -> None:
        self._stop.set()
        self._image_wake.set()

    def run(self) -> None:
        """Until stop(): the database must be reachable at start (migrations); the broker may come later."""
        self.check_database()
        client = self._client or make_client(self.broker, self.client_id, clean_session=False, manual_ack=True)
        client.on_connect, client.on_disconnect, client.on_message = (
            self._on_connect,
            self._on_disconnect,
            self._on_message,
        )
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(0.5, 10)  # type: ignore[arg-type]  # seconds; paho takes a float as well
        self._client = client
        client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        client.loop_start()
        fetcher = threading.Thread(target=self._fetch_images, name="fleet-images", daemon=True) \
            if self.images is not None else None  # fmt: skip
        if fetcher:
            fetcher.start()
        conn = None
        try:
            while not self._stop.is_set():
                items = self._take()
                if not items:
                    continue
                while not self._stop.is_set():
                    try:
                        if conn is None or conn.closed:
                            conn = psycopg.connect(self.dsn, connect_timeout=10)
                        self.write(conn, items)
                        break
                    except psycopg.OperationalError as err:
                        log.warning("collector: database: %s; retrying", err)
                        conn = None
                        self._stop.wait(1.0)
        finally:
            client.disconnect()
            client.loop_stop()
            if conn is not None:
                conn.close()
            if fetcher:
                fetcher.join(5)

    def _take(self) -> list:
        """A batch: what has arrived, until the queue stays empty for 5 ms, ``batch`` items or ``batch_ms``
        (the broker sends at most its max_inflight_messages unacknowledged: waiting longer gains nothing)."""
        try:
            items = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_s
        while len(items) < self.batch:
            left = deadline - time.monotonic()
            try:
                items.append(self._queue.get(timeout=min(left, 0.005)) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _parse(self, items: list) -> _Batch:
        """The batch's rows; a message the schema refuses (bad JSON, wrong types, unknown version,
        values out of range, oversize) becomes a dead letter with its reason, never an exception."""
        b = _Batch()
        for topic, raw, _mid, _qos in items:
            self.stats["messages"] += 1
            parts = parse_topic(topic)
            key = "/".join(parts[1:4]) if parts else None
            try:
                if parts is None:
                    raise MessageRefused(f"not a station topic: {topic!r}")
                body, _ = parse_message(raw, parts[4])
            except MessageRefused as err:
                b.dead.append((topic, key, str(err), bytes(raw[:DEAD_LETTER_BYTES]), len(raw)))
                continue
            _, site, line, station, kind = parts
            key = f"{site}/{line}/{station}"
            b.stations[key] = (site, line, station)
            if kind == "inspection":
                self._inspection(b, key, body)
                b.confirm[topic.rsplit("/", 1)[0]].append(body["id"])
            elif kind == "alarm":
                b.alarms.append(
                    (
                        body["id"],
                        key,
                        body["event"],
                        body["code"],
                        body.get("message"),
                        body.get("user"),
                        _ts(body.get("at")) or datetime.now(timezone.utc),
                    )
                )
                b.confirm[topic.rsplit("/", 1)[0]].append(body["id"])
            elif kind == "review":
                b.reviews.add(key, body)
                b.confirm[topic.rsplit("/", 1)[0]].append(body["id"])
            elif kind == "status":
                # The last will was written when the station connected: it counts from its arrival.
                will = not body.get("online") and body.get("reason") == "connection lost"
                at = datetime.now(timezone.utc) if will else _ts(body.get("at")) or datetime.now(timezone.utc)
                if key not in b.status or b.status[key][1] <= at:
                    b.status[key] = (bool(body.get("online")), at, Jsonb(body), "alarms" in body)
                if will:
                    continue
            if kind in ("inspection", "status"):
                seen = _ts(body.get("ts_unix") or body.get("at"))
                if seen is not None and (key not in b.seen or b.seen[key] < seen):
                    b.seen[key] = seen
        return b

    def _inspection(self, b: _Batch, key: str, m: dict) -> None:
        image = m.get("image") or {}
        access = self.tokens.get(key)
        # Only from the station's pinned origin, at the path the station serves: a URL in the message is
        # never fetched (it could name a file, another station or any host).
        urls = [
            f"{access.url}/api/inspections/{m['inspection_id']}/{kind}" if access and image.get(field) else None
            for field, kind in (("path", "image"), ("overlay_path", "overlay"))
        ]
        pending = self.images is not None and any(urls)
        b.inspections.append(
            (
                m["id"],
                key,
                m["inspection_id"],
                m.get("result_id"),
                _ts(m["ts_unix"]),
                m.get("recipe"),
                m.get("recipe_name"),
                m.get("recipe_sha256"),
                m.get("part_id"),
                m.get("trigger"),
                m["verdict"],
                m.get("error"),
                m.get("defect_count"),
                m.get("failed_checks"),
                Jsonb(m.get("timings_ms") or {}),
                m.get("model_sha256"),
                m.get("config_sha256"),
                image.get("path"),
                image.get("overlay_path"),
                urls[0],
                urls[1],
                "pending" if pending else "none",
            )
        )
        for c in m.get("checks") or []:
            b.checks.append(
                (
                    m["id"],
                    c["idx"],
                    c.get("name"),
                    c.get("kind"),
                    c.get("status"),
                    c.get("reason"),
                    c.get("counted"),
                    c.get("answer"),
                    c.get("p_yes"),
                    c.get("margin"),
                    c.get("mass"),
                    c.get("ms"),
                    Jsonb(c.get("points") or []),
                )
            )

    def write(self, conn: psycopg.Connection, items: list) -> None:
        """Store a batch of (topic, payload, mid, qos) as received in one transaction, then acknowledge it
        to the broker and confirm it to the stations; a batch that PostgreSQL refuses (a value its
        columns cannot hold) is stored one message at a time, and the message it refuses goes to the
        dead letters."""
        b = self._parse(items)
        try:
            counts = self._store(conn, b)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as err:
            if len(items) == 1:
                topic, raw = items[0][0], items[0][1]
                parts = parse_topic(topic)
                b = _Batch(
                    dead=[
                        (
                            topic,
                            "/".join(parts[1:4]) if parts else None,
                            f"database refused it: {' '.join(str(err).split())}"[:500],
                            bytes(raw[:DEAD_LETTER_BYTES]),
                            len(raw),
                        )
                    ]
                )
                counts = self._store(conn, b)
            else:
                for item in items:
                    self.stats["messages"] -= 1  # counted again, one by one
                    self.write(conn, [item])
                return
        self._after_commit(b, items, counts)

    def _store(self, conn: psycopg.Connection, b: _Batch) -> tuple[int, int]:
        """One transaction; (inspections of the batch stored before, after)."""
        before = stored = 0
        with conn.transaction(), conn.cursor() as cur:
            if b.stations:
                cur.executemany(
                    "INSERT INTO stations (station_key, site, line, station) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (station_key) DO NOTHING",
                    [(k, *v) for k, v in sorted(b.stations.items())],
                )
            if b.inspections:
                before = pg_schema.scalar(
                    cur, "SELECT count(*) FROM inspections WHERE msg_id = ANY(%s)", [[i[0] for i in b.inspections]]
                )
                cur.executemany(
                    "INSERT INTO inspections (msg_id, station_key, inspection_id, result_id, ts, recipe, recipe_name, "
                    "recipe_sha256, part_id, trigger, verdict, error, defect_count, failed_checks, timings_ms, "
                    "model_sha256, config_sha256, image_path, overlay_path, image_url, overlay_url, image_state) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    b.inspections,
                )  # on msg_id, and on (station_key, inspection_id)
                stored = pg_schema.scalar(
                    cur, "SELECT count(*) FROM inspections WHERE msg_id = ANY(%s)", [[i[0] for i in b.inspections]]
                )
            if b.checks:  # only for the rows stored (not for a message whose inspection was stored under another id)
                cur.executemany(
                    "INSERT INTO checks (msg_id, idx, name, kind, status, reason, counted, answer, p_yes, margin, "
                    "mass, ms, points) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s "
                    "WHERE EXISTS (SELECT 1 FROM inspections WHERE msg_id = %s) "
                    "ON CONFLICT (msg_id, idx) DO NOTHING",
                    [(*c, c[0]) for c in b.checks],
                )
            if b.alarms:
                cur.executemany(
                    "INSERT INTO alarm_events (msg_id, station_key, event, code, message, username, at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (msg_id) DO NOTHING",
                    b.alarms,
                )
            b.reviews.write(cur)
            for key, (online, at, body, has_alarms) in b.status.items():
                # A status without an alarm list (the last will) keeps the list of the one before: the
                # station's alarms as they were when it was last heard of.
                cur.execute(
                    "UPDATE stations SET online = %s, status_at = %s, status = CASE WHEN %s OR status IS NULL "
                    "OR status -> 'alarms' IS NULL THEN %s ELSE %s || jsonb_build_object('alarms', "
                    "status -> 'alarms') END WHERE station_key = %s AND (status_at IS NULL OR status_at <= %s)",
                    [online, at, has_alarms, body, body, key, at],
                )
            for key, at in b.seen.items():
                cur.execute(
                    "UPDATE stations SET last_seen = %s WHERE station_key = %s AND "
                    "(last_seen IS NULL OR last_seen < %s)",
                    [at, key, at],
                )
            if b.dead:
                cur.executemany(
                    "INSERT INTO dead_letters (topic, station_key, reason, raw, size) VALUES (%s, %s, %s, %s, %s)",
                    b.dead,
                )
        return before, stored

    def _after_commit(self, b: _Batch, items: list, counts: tuple[int, int]) -> None:
        """Committed: now the broker may forget the messages (dead letters too: kept in the table), and
        the stations may drop them from their outboxes."""
        before, stored = counts
        if b.dead:
            self.stats["dead_letters"] += len(b.dead)
            for topic, _key, reason, _raw, _size in b.dead[:3]:
                log.warning("collector: %s: message kept as a dead letter: %s", topic, reason)
            if len(b.dead) > 3:
                log.warning("collector: %d more messages of this batch kept as dead letters", len(b.dead) - 3)
        self.stats["reviews"] += b.reviews.messages()
        if b.inspections:
            messages = len({i[0] for i in b.inspections})
            self.stats["inspections"] += stored - before
            self.stats["duplicates"] += messages - (stored - before)
        client = self._client
        if client is None:
            raise RuntimeError("the collector's MQTT client is not made")  # run() makes it before any message
        for _topic, _raw, mid, qos in items:
            if qos > 0:
                client.ack(mid, qos)
        for base, ids in b.confirm.items():
            for start in range(0, len(ids), 1000):
                client.publish(f"{base}/ack", dumps({"ids": ids[start : start + 1000]}), qos=1)
        if any(i[-1] == "pending" for i in b.inspections):
            self._image_wake.set()

    # -- images ---------------------------------------------------------------------------------------
    def _fetch_images(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, connect_timeout=10, autocommit=True)
                rows = conn.execute(
                    "SELECT msg_id, station_key, image_url, overlay_url, image_attempts FROM inspections "
                    "WHERE image_state = 'pending' AND (image_next_try IS NULL OR image_next_try <= now()) "
                    "ORDER BY image_next_try NULLS FIRST, ingest_seq LIMIT 20"
                ).fetchall()
                for row in rows:
                    if self._stop.is_set():
                        break
                    self._fetch_one(conn, *row)
                if not rows:
                    self._image_wake.wait(1.0)
                    self._image_wake.clear()
            except psycopg.Error as err:
                log.warning("collector: images: database: %s", err)
                conn = None
                self._stop.wait(1.0)
        if conn is not None:
            conn.close()

    def _fetch_one(self, conn: psycopg.Connection, msg_id, key: str, image_url, overlay_url, attempts: int) -> None:
        access = self.tokens.get(key)
        if self.images is None:
            raise RuntimeError("image fetches without an image store")  # started only with --images
        try:
            if access is None:
                raise FetchError(f"{key}: no pinned origin in --station-tokens", permanent=True)
            shas = [
                self.images.put(fetch(u, access.token, access.url)) if u else None for u in (image_url, overlay_url)
            ]
        except FetchError as err:
            attempts += 1
            failed = err.permanent or attempts >= 20
            conn.execute(
                "UPDATE inspections SET image_attempts = %s, image_error = %s, image_state = %s, "
                "image_next_try = now() + make_interval(secs => %s) WHERE msg_id = %s",
                [attempts, str(err), "failed" if failed else "pending", min(2.0**attempts, 3600.0), msg_id],
            )
            log.info("collector: image of %s: %s%s", key, err, " (given up)" if failed else "")
            return
        conn.execute(
            "UPDATE inspections SET image_sha256 = %s, overlay_sha256 = %s, image_state = 'done', "
            "image_error = NULL WHERE msg_id = %s",
            [shas[0], shas[1], msg_id],
        )
        self.stats["images"] += 1
