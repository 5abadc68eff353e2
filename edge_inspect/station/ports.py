"""What each adapter may use of the station: narrow Protocols, so the PLC cycle, the OPC UA server,
fleet publishing, the config keeper and the web depend on these few members and not on the Station class (which knows
none of them; daemon.py attaches them)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..config import StationConfig
from ..logbook import InspectionRecord, Store
from ..verdict import ErrorCode
from .alarms import AlarmBoard
from .events import EventBus


class Alarms(Protocol):
    def raise_alarm(self, code: str, message: str) -> None: ...

    def clear_alarm(self, code: str) -> None: ...


class Inspects(Protocol):
    """Running an inspection: awaited, or as a task of the station's that stop() lets complete."""

    def spawn_inspection(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    async def inspect(
        self,
        recipe: int,
        part_id: str = "",
        trigger: str = "software",
        result_id: int | None = None,
        started: float | None = None,
    ) -> tuple[InspectionRecord, ErrorCode]: ...


class PlcHost(Alarms, Inspects, Protocol):
    """What the PLC cycle uses: the config (poll period, options), the counters it adds missed
    triggers to, whether the station stops, and running an inspection as the station's task."""

    config: StationConfig
    counters: dict[str, int]

    @property
    def stopping(self) -> bool: ...

    def result_out(self, result_id: int) -> None: ...


class Observed(Protocol):
    """A station seen from outside: its config, events and status."""

    config: StationConfig
    config_sha256: str
    events: EventBus

    def status(self) -> dict: ...


class KeeperPort(Alarms, Protocol):
    """What the config keeper uses: the running config's hash, the log, and applying a new config."""

    config_sha256: str
    store: Store

    async def apply_config(self, new: StationConfig, sha256: str) -> tuple[list[str], list[str]]: ...

    async def check_cameras(self, new: StationConfig) -> None: ...


class FleetPort(Observed, Alarms, Protocol):
    """What fleet publishing uses: events and status to publish, the log's outbox, alarms raised from its thread."""

    store: Store
    alarms_closed_at_start: tuple[list[str], float]

    def call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None: ...


class OpcUaPort(Observed, Inspects, Protocol):
    """What the OPC UA server uses: identity, counters, alarms, and starting an inspection."""

    model_sha256: str
    counters: dict[str, int]
    alarms: AlarmBoard

    @property
    def inspecting(self) -> bool: ...

    def config_versions(self) -> list[dict]: ...
