"""The station's side of fleet publishing (docs/fleet.md): wires the store's outbox, the station's
events and status, and the publisher thread together.

On the station's event loop only non-blocking work happens: waking the publisher, handing it the
status dict, and alarm callbacks. Alarm messages are written to the outbox by a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..config import FleetConfig
from ..logbook import Store
from ..logbook.check_definitions import RecipeChecks, recipe_checks
from ..station.events import AlarmAcknowledged, AlarmCleared, AlarmRaised, Event, InspectionDone, Started
from .messages import Topics, alarm_payload, dumps, inspection_payload, new_id, review_payload
from .mqtt import BrokerSettings
from .outbox import Outbox
from .publisher import Publisher
from .schema import MessageRefused, parse_message

if TYPE_CHECKING:
    from ..station.ports import FleetPort

log = logging.getLogger(__name__)


def broker_settings(config: FleetConfig) -> BrokerSettings:
    tls = config.tls
    return BrokerSettings(
        host=config.host,
        port=config.broker_port,
        tls=tls is not None,
        ca=tls.ca if tls else None,
        cert=tls.cert if tls else None,
        key=tls.key if tls else None,
        username=config.username,
        password=config.password(),
        keepalive_s=config.keepalive_s,
    )


def attach_outbox(
    store: Store, topics: Topics, image_base_url: str | None = None, recipes: Callable[[], list] | None = None
) -> Outbox:
    """From now on every inspection ``store`` logs, and every review of one, has its message in the outbox,
    in the same transaction. ``recipes``: the running config's recipes, for the checks of an inspection
    whose config version the log does not hold (logbook/check_definitions.py)."""
    outbox = Outbox(store)
    definitions = RecipeChecks(store, {})

    def message(inspection_id: int, row: dict, rec) -> tuple[str, str, str] | None:
        """The inspection's message; None (logged, never published) where the fleet schema refuses it."""
        msg_id = new_id()
        payload = dumps(inspection_payload(msg_id, topics, inspection_id, row, rec, image_base_url))
        try:
            parse_message(payload, "inspection")
        except MessageRefused as err:
            log.error("fleet: inspection %d not published: its message breaks the fleet schema: %s", inspection_id, err)
            return None
        outbox.added(len(payload))
        return msg_id, "inspection", payload

    def review(db: sqlite3.Connection, inspection_id: int, event: dict) -> tuple[str, str, str] | None:
        """The review's message, with the inspection's check definitions; None (logged) where the
        inspection is gone or the fleet schema refuses the message."""
        row = db.execute("select config_sha256, recipe from inspections where id = ?", [inspection_id]).fetchone()
        if row is None:
            log.error("fleet: review of inspection %d not published: no such inspection", inspection_id)
            return None
        names = [
            r[0] for r in db.execute("select name from checks where inspection_id = ? order by idx", [inspection_id])
        ]
        definitions.current = recipe_checks(recipes() if recipes is not None else [])
        defined = definitions.of(row[0] or "", row[1] if isinstance(row[1], int) else -1, db)
        shown = [
            {"name": name, **{k: v for k, v in defined[name].items() if k != "settings"},
             "settings": json.loads(json.dumps(defined[name].get("settings") or {}, default=str))}
            for name in names if name in defined
        ]  # fmt: skip
        msg_id = new_id()
        payload = dumps(review_payload(msg_id, topics, inspection_id, event, shown))
        try:
            parse_message(payload, "review")
        except MessageRefused as err:
            log.error(
                "fleet: review of inspection %d not published: its message breaks the schema: %s", inspection_id, err
            )
            return None
        outbox.added(len(payload))
        return msg_id, "review", payload

    store.outbox_message = message
    store.review_message = review
    return outbox


class FleetLink:
    """Attached to the station by daemon.py: started after the PLC link, stopped before the log closes."""

    def __init__(self, station: FleetPort, config: FleetConfig):
        self.station, self.config = station, config
        self.topics = Topics(config.prefix, config.site, config.line, station.config.station.name)
        self.outbox = attach_outbox(
            station.store, self.topics, config.image_base_url, recipes=lambda: station.config.recipes
        )
        self.publisher = Publisher(
            self.outbox,
            self.topics,
            broker_settings(config),
            config.client_id or f"edge-inspect-{config.site}-{config.line}-{self.topics.station}",
            window=config.window,
            confirm_timeout_s=config.confirm_timeout_s,
            status_every_s=config.status_every_s,
            outbox_max_bytes=config.outbox_max_mb * 1e6,
            offline_alarm_s=max(60.0, 2.0 * config.keepalive_s),
            on_alarm=self._alarm_from_thread,
        )
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-outbox")
        self._unsubscribe = station.events.subscribe(self._on_event)
        self._status_task: asyncio.Task | None = None

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Started):  # the status says online from the first message on
            self.publisher.set_status(self.station.status())
            self._status_task = asyncio.create_task(self.status_loop(), name="fleet-status")
            return
        if isinstance(event, InspectionDone):
            self.publisher.wake()  # the row (and its message) committed before the event
            return
        if isinstance(event, AlarmRaised):
            body = ("raised", event.code, event.message, "")
        elif isinstance(event, AlarmCleared):
            body = ("cleared", event.code, "", "")
        elif isinstance(event, AlarmAcknowledged):
            body = ("acknowledged", event.code, "", event.user)
        else:
            return
        msg_id = new_id()
        payload = dumps(alarm_payload(msg_id, self.topics, *body, at=time.time()))
        self._writer.submit(self._enqueue, msg_id, payload)
        self.publisher.set_status(self.station.status())

    def closed_at_start(self, codes: list[str], at: float) -> None:
        """Alarms the previous run left open, closed in the log's history at this start: the central
        alarm history gets their ``cleared`` too (message "closed at station start")."""
        for code in codes:
            msg_id = new_id()
            payload = dumps(alarm_payload(msg_id, self.topics, "cleared", code, "closed at station start", at=at))
            self._writer.submit(self._enqueue, msg_id, payload)

    def state(self) -> dict:
        """For /api/status: connected, and if not, why (e.g. "… refused the connection: not authorized: …")."""
        p = self.publisher
        return {"connected": p.connected, "problem": None if p.connected else p.problem, "outbox": p.outbox_stats()}

    def _enqueue(self, msg_id: str, payload: str) -> None:
        try:
            self.outbox.enqueue(msg_id, "alarm", payload)
        except Exception:  # a full disk must not stop the alarms themselves
            log.warning("fleet: could not queue alarm message", exc_info=True)
        self.publisher.wake()

    def _alarm_from_thread(self, code: str, message: str | None) -> None:
        if message is None:
            self.station.call_soon_threadsafe(self.station.clear_alarm, code)
        else:
            self.station.call_soon_threadsafe(self.station.raise_alarm, code, message)

    async def status_loop(self) -> None:
        """The retained status every status_every_s (and on every alarm event, above)."""
        while True:
            self.publisher.set_status(self.station.status())
            await asyncio.sleep(min(self.config.status_every_s, 5.0))

    async def start(self) -> None:
        """The publisher's thread starts (the broker never delays the PLC); alarms the previous run left
        open and the start closed go out as cleared."""
        codes, at = self.station.alarms_closed_at_start
        if codes:
            self.closed_at_start(codes, at)
        self.publisher.start()

    async def stop(self) -> None:
        """Before the store closes: pending alarm messages written, offline status published."""
        self._unsubscribe()
        if self._status_task is not None:
            self._status_task.cancel()
            await asyncio.gather(self._status_task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.shutdown, True)
        self.publisher.set_status(self.station.status())
        await loop.run_in_executor(None, self.publisher.stop)
        self.outbox.close()
