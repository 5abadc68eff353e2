"""The station's publisher: one thread that owns the MQTT connection and reads the outbox.

Nothing here runs on the station's event loop, so the PLC handshake never waits for the broker.
Each connection starts at the oldest message the collector has not confirmed and sends in outbox
order (QoS 1), at most ``window`` messages ahead of the collector's confirmations. The broker's
PUBACK only means the broker has it; a message leaves the outbox when the collector says it is in
the central database (topic ``…/ack``). No confirmation for ``confirm_timeout_s``: send again from
the oldest unconfirmed message (a broker that died with messages in memory), backing off to 10
minutes while nothing is confirmed. Redelivery is harmless: the collector upserts on the message id.

A broker that cannot be reached, or that refuses the connection (a wrong password, say), is tried
again after 0.5 s, doubling up to 30 s until a connection is accepted; the reason (``problem``) is
logged once each time it changes and named in the ``fleet_offline`` alarm.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho

from .messages import Topics, dumps, status_payload, will_payload
from .mqtt import BrokerSettings, make_client
from .outbox import Outbox

log = logging.getLogger(__name__)

# alarm code -> message, or None to clear; called from this thread (the caller marshals to its loop)
AlarmCallback = Callable[[str, str | None], None]

FIRST_RETRY_S, MAX_RETRY_S = 0.5, 30.0


def refusal(reason_code) -> str:
    """What a refused CONNACK means for whoever configures the station (MQTT 3.1.1 return codes 1-5)."""
    value = getattr(reason_code, "value", reason_code)
    if value in (4, 5, 134, 135):  # bad user name or password / not authorized
        return "not authorized: check fleet.username / password (and the broker's ACL for this client)"
    if value in (2, 133):
        return "client id refused: check fleet.client_id"
    if value in (3, 136):
        return "broker unavailable (it refused new connections)"
    if value in (1, 132):
        return "the broker does not speak MQTT 3.1.1"
    return f"refused: {reason_code}"


class Publisher:
    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        broker: BrokerSettings,
        client_id: str,
        *,
        window: int = 500,
        confirm_timeout_s: float = 30.0,
        status_every_s: float = 10.0,
        outbox_max_bytes: float = 256e6,
        offline_alarm_s: float = 60.0,
        on_alarm: AlarmCallback | None = None,
    ):
        self.outbox, self.topics, self.broker, self.client_id = outbox, topics, broker, client_id
        self.window, self.confirm_timeout_s, self.status_every_s = window, confirm_timeout_s, status_every_s
        self.outbox_max_bytes, self.offline_alarm_s = outbox_max_bytes, offline_alarm_s
        self.on_alarm = on_alarm or (lambda code, message: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._connected = False
        self._connecting_since = 0.0
        self._confirmed: list[str] = []  # message ids the collector has stored (filled by on_message)
        self._to_delete: list[str] = []  # confirmed, to be deleted from the outbox
        self._deleted_at = 0.0
        self._sent: dict[str, int] = {}  # msg_id -> seq, published on this connection, not yet confirmed
        self._cursor = 0  # the highest seq published on this connection
        self._last_progress = time.monotonic()
        self._timeout = confirm_timeout_s
        self._status: dict | None = None
        self._status_sent_at = 0.0
        self._status_dirty = True
        self._alarms: dict[str, tuple | None] = {}  # code -> (key,) while raised
        self._disconnected_since = time.monotonic()
        self._final_status: dict | None = None
        self.retry_in_s = FIRST_RETRY_S  # the wait before the next attempt after a failed one (doubles, bounded)
        self.problem: str | None = None  # why there is no connection (None: connected, or not tried yet)
        self._logged_problem: str | None = None
        self._refused = False  # the current attempt was refused by the broker (its CONNACK)
        self._up_since = 0.0  # monotonic time of the latest accepted connection
        self.stats = {
            "published": 0,
            "confirmed": 0,
            "rewinds": 0,
            "connects": 0,
            "dropped": 0,
            "attempts": 0,
            "refused": 0,
        }

    # -- from other threads ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet-publisher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A new message is in the outbox (non-blocking; safe from the event loop)."""
        self._wake.set()

    def set_status(self, status: dict) -> None:
        """The station's latest status (published retained when it changes, and every status_every_s)."""
        self._status = status
        self._status_dirty = True
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._connected

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``online: false`` (retained), disconnect and end the thread (blocking, bounded)."""
        self._final_status = {"reason": "stopped"}
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + 2.0)

    # -- the thread ------------------------------------------------------------------------------
    def _retry_later(self, now: float) -> float:
        """When to try again: the wait doubles with every failed attempt, and starts again from 0.5 s only
        after a connection that lasted 10 s (a broker that accepts and drops at once is no storm either)."""
        if self._up_since and now - self._up_since >= 10.0:
            self.retry_in_s = FIRST_RETRY_S
        self._up_since = 0.0
        wait = self.retry_in_s
        self.retry_in_s = min(wait * 2, MAX_RETRY_S)
        return now + wait

    def _run(self) -> None:
        next_try = next_trim = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if self._client is None and now >= next_try and not self._connect():
                    next_try = self._retry_later(now)
                client = self._client
                if client is not None:
                    rc = client.loop(timeout=0.05)
                    if rc != paho.MQTT_ERR_SUCCESS or (not self._connected and now - self._connecting_since > 15):
                        self._drop(
                            f"connection lost ({paho.error_string(rc)})"
                            if rc
                            else "no answer from the broker (no CONNACK in 15 s)"
                        )
                        next_try = self._retry_later(now)
                else:
                    self._wake.wait(0.05)
                self._wake.clear()
                self._take_confirmations()
                if self._connected and self._client is not None:
                    self._publish_status(self._client, now)
                    self._publish_more(self._client)
                    self._check_timeout(now)
                if now >= next_trim:
                    next_trim = now + 1.0
                    self._check_budget()
                self._alarm(
                    "fleet_offline",
                    None
                    if self._connected or now - self._disconnected_since < self.offline_alarm_s
                    else f"no connection to the MQTT broker {self.broker.where()} "
                    f"for {now - self._disconnected_since:.0f} s ({self.problem or 'connecting'}); "
                    f"{self.outbox.count} message(s) wait",
                    key=self.problem,
                )
            except Exception:  # a bug or a full disk: keep trying, never take the station down
                log.exception("fleet publisher")
                self._drop("error")
                self._stop.wait(1.0)
        self._shutdown()

    def _note_problem(self, problem: str, level: int = logging.INFO) -> None:
        """Why there is no connection; logged when it differs from the last one logged (not every attempt)."""
        self.problem = problem
        if problem != self._logged_problem:
            self._logged_problem = problem
            log.log(
                level,
                "fleet: %s (trying again from 0.5 s, doubling up to %.0f s between attempts; logged "
                "again when this changes)",
                problem,
                MAX_RETRY_S,
            )

    def _connect(self) -> bool:
        # The last will is registered now: its time is the connection's (``connected_at``), not the loss's.
        offline = dumps(will_payload(self.topics, time.time()))
        client = make_client(self.broker, self.client_id, clean_session=True, will=(self.topics.of("status"), offline))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.max_inflight_messages_set(min(self.window, 1000))
        client.max_queued_messages_set(0)
        self.stats["attempts"] += 1
        self._refused = False
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        except (OSError, ValueError) as err:
            self._note_problem(f"cannot reach the broker {self.broker.where()}: {err}")
            return False
        self._client, self._connecting_since = client, time.monotonic()
        return True

    def _drop(self, why: str) -> None:
        if self._client is not None:
            if not self._refused:  # a refusal was noted already, with its reason
                self._note_problem(f"{why} ({self.broker.where()})")
            try:
                self._client.socket() and self._client.disconnect()
            except Exception:  # the socket may be gone already
                pass
        if self._connected:
            self._disconnected_since = time.monotonic()
        self._client, self._connected = None, False
        self._sent.clear()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.stats["refused"] += 1
            self._refused = True
            self._note_problem(
                f"broker {self.broker.where()} refused the connection: {refusal(reason_code)}", logging.WARNING
            )
            return
        client.subscribe(self.topics.of("ack"), qos=1)
        self._connected = True
        self.stats["connects"] += 1
        self._cursor = 0  # from the oldest message not yet confirmed, in order
        self._sent.clear()
        self._last_progress, self._timeout = time.monotonic(), self.confirm_timeout_s
        self._status_dirty = True
        self._up_since, self.problem, self._logged_problem = time.monotonic(), None, None
        log.info("fleet: connected to %s; %d message(s) to send", self.broker.where(), self.outbox.count)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is self._client and self._connected:
            self._disconnected_since = time.monotonic()
            self._connected = False

    def _on_message(self, client, userdata, message) -> None:
        try:
            ids = json.loads(message.payload).get("ids", [])
        except (ValueError, AttributeError):
            log.warning("fleet: unreadable confirmation on %s", message.topic)
            return
        self._confirmed.extend(str(i) for i in ids if isinstance(i, str))

    def _take_confirmations(self, flush: bool = False) -> None:
        """Confirmed messages free the window at once; they are deleted from the outbox in one
        transaction at most once a second (each delete is a commit the inspections would queue behind)."""
        if self._confirmed:
            ids, self._confirmed = self._confirmed, []
            for msg_id in ids:
                self._sent.pop(msg_id, None)
            self._to_delete.extend(ids)
            self._last_progress, self._timeout = time.monotonic(), self.confirm_timeout_s
        now = time.monotonic()
        if self._to_delete and (flush or now - self._deleted_at >= 1.0 or len(self._to_delete) >= 5000):
            ids, self._to_delete = self._to_delete, []
            self._deleted_at = now
            self.stats["confirmed"] += self.outbox.confirm(ids)

    def _publish_more(self, client: paho.Client) -> None:
        room = self.window - len(self._sent)
        while room > 0 and self._connected:
            batch = self.outbox.after(self._cursor, min(room, 200))
            if not batch:
                return
            for m in batch:
                info = client.publish(self.topics.of(m.kind), m.payload, qos=1)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    return  # the connection is going; the next one starts over
                if not self._sent:
                    self._last_progress = time.monotonic()  # the timeout counts from the first unconfirmed
                self._sent[m.msg_id] = m.seq
                self._cursor = m.seq
                self.stats["published"] += 1
            room -= len(batch)

    def _check_timeout(self, now: float) -> None:
        if self._sent and now - self._last_progress > self._timeout:
            log.warning(
                "fleet: no confirmation from the collector for %.0f s; sending again from the oldest of %d message(s)",
                self._timeout,
                self.outbox.count,
            )
            self.stats["rewinds"] += 1
            self._cursor = 0
            self._sent.clear()
            self._last_progress, self._timeout = now, min(self._timeout * 2, 600.0)

    def _publish_status(self, client: paho.Client, now: float) -> None:
        if self._status is None or not (self._status_dirty or now - self._status_sent_at >= self.status_every_s):
            return
        body = status_payload(self.topics, True, time.time(), self._status, outbox=self.outbox_stats())
        client.publish(self.topics.of("status"), dumps(body), qos=1, retain=True)
        self._status_dirty, self._status_sent_at = False, now

    def outbox_stats(self) -> dict:
        return {"messages": self.outbox.count, "bytes": self.outbox.bytes, "dropped": self.outbox.dropped}

    def _check_budget(self) -> None:
        dropped = self.outbox.trim(self.outbox_max_bytes)
        if dropped:
            self.stats["dropped"] += dropped
            log.error(
                "fleet: outbox over its budget (%.0f MB): the %d oldest message(s) dropped (the log keeps "
                "the inspections; audit row fleet_outbox_dropped)",
                self.outbox_max_bytes / 1e6,
                dropped,
            )
        used = self.outbox.bytes / self.outbox_max_bytes
        if self.outbox.dropped:
            self._alarm(
                "fleet_backlog",
                f"fleet outbox full: {self.outbox.dropped} message(s) dropped, "
                f"{self.outbox.count} wait ({used:.0%} of {self.outbox_max_bytes / 1e6:.0f} MB)",
            )
        elif used >= 0.8:
            self._alarm(
                "fleet_backlog",
                f"fleet outbox at {used:.0%} of {self.outbox_max_bytes / 1e6:.0f} MB "
                f"({self.outbox.count} message(s) not yet in the central database)",
            )
        elif used < 0.5:
            self._alarm("fleet_backlog", None)

    def _alarm(self, code: str, message: str | None, key: str | None = None) -> None:
        """Raise (``message``) or clear (None). Raised already: passed on again only when ``key`` changes
        (the reason, say; a changed count of seconds alone is not news)."""
        known = self._alarms.get(code)  # (key,) while raised
        if (known is None) == (message is None) and (message is None or known == (key,)):
            return
        self._alarms[code] = None if message is None else (key,)
        self.on_alarm(code, message)

    def _shutdown(self) -> None:
        client = self._client
        if client is None or not self._connected:
            try:
                self._take_confirmations(flush=True)
            except Exception:  # the store may be failing; the messages are sent again next time
                log.warning("fleet: could not delete confirmed messages", exc_info=True)
            return
        try:
            deadline = time.monotonic() + 2.0  # a moment for the confirmations of what was sent
            while self._sent and self._connected and time.monotonic() < deadline:
                client.loop(timeout=0.05)
                self._take_confirmations()
            self._take_confirmations(flush=True)
            body = status_payload(
                self.topics, False, time.time(), self._status, reason="stopped", outbox=self.outbox_stats()
            )
            info = client.publish(self.topics.of("status"), dumps(body), qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline and self._connected:
                client.loop(timeout=0.05)
            client.disconnect()
            client.loop(timeout=0.1)
        except Exception:
            log.debug("fleet: disconnect", exc_info=True)
        self._client, self._connected = None, False
