"""Typed station events and the bus that hands them to subscribers (CLI, web, future MQTT).

Events are published on the station's event loop. Subscribers read them and never change the
station; a subscriber that raises is logged and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a ``type`` key (the shape the HMI's event stream carries)."""
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True)
class Started(Event):
    type: ClassVar[str] = "started"
    station: str


@dataclass(frozen=True)
class Stopped(Event):
    type: ClassVar[str] = "stopped"


@dataclass(frozen=True)
class CheckSummary:
    name: str
    kind: str
    status: str
    reason: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class InspectionDone(Event):
    type: ClassVar[str] = "inspection"
    id: int | None  # the log row; None when the log could not be written
    result_id: int
    verdict: str
    recipe: int
    part_id: str
    trigger: str
    error: str
    error_code: int
    defect_count: int
    failed_checks: int
    checks: list[CheckSummary] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    at: float = 0.0  # unix time the result was ready
    frame: bool = True  # False: no frame was taken (camera fault): the HMI shows the reason, not an old image
    unfamiliar: bool = False  # the unfamiliar-frame guard flagged the frame


@dataclass(frozen=True)
class AlarmRaised(Event):
    type: ClassVar[str] = "alarm"
    code: str
    message: str


@dataclass(frozen=True)
class AlarmAcknowledged(Event):
    type: ClassVar[str] = "alarm_acknowledged"
    code: str
    user: str = ""


@dataclass(frozen=True)
class AlarmCleared(Event):
    type: ClassVar[str] = "alarm_cleared"
    code: str


@dataclass(frozen=True)
class ModelChanged(Event):
    """Another model version judges the parts from now on (a live swap, docs/model-lifecycle.md)."""

    type: ClassVar[str] = "model"
    version: str
    previous: str
    alias: str
    reason: str  # promote | rollback | auto-rollback


@dataclass(frozen=True)
class ShadowChanged(Event):
    """A shadow run began (or resumed), ended by itself or was stopped (docs/model-lifecycle.md)."""

    type: ClassVar[str] = "shadow"
    state: str  # running | ended | failed
    version: str
    run: int
    reason: str  # who started it, or why it ended


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.last: Event | None = None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event from now on; returns the unsubscribe function."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, event: Event) -> None:
        self.last = event
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event.type)
