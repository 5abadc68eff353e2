"""What both links share: their settings, their error, and the PLC's inputs as handshake Inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import UserError
from .handshake import Inputs
from .signals import SignalMap


class LinkError(Exception):
    """The PLC link failed (connection refused, timeout, exception response, port lost)."""


class StartError(UserError):
    """The link cannot start: port in use, serial device missing or busy (one line for the user)."""


@dataclass(frozen=True)
class LinkSettings:
    mode: Literal["server", "client"] = "server"
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = 5020
    serial_port: str = ""
    baudrate: int = 19200
    parity: str = "N"
    device_id: int = 1
    timeout_s: float = 0.5  # client: one request's answer
    absent_after_s: float = 5.0  # server: no request for this long = PLC absent (0 = off)
    refresh_s: float = 1.0  # client: every output rewritten at least this often
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0
    stop_hold_s: float = 2.0  # server: how long a stop waits for the PLC to read online = 0
    part_id_encoding: Literal["ascii", "utf-8", "shift_jis"] = "ascii"
    part_id_byte_order: Literal["high_first", "low_first"] = "high_first"


def input_names(signal_map: SignalMap) -> list[str]:
    """The signals the PLC writes (trigger, results_ack, …, recipe_change when that option is on)."""
    return [s.name for s in signal_map.signals if s.direction == "plc_to_appliance"]


def inputs_from(values: Mapping[str, bool | int | str], trigger_edges: int | None = None) -> Inputs:
    """``trigger_edges``: rising edges of trigger since the last read, from a link that sees every write."""
    return Inputs(
        trigger=bool(values["trigger"]),
        results_ack=bool(values["results_ack"]),
        trigger_id=int(values["trigger_id"]),
        recipe=int(values["recipe"]),
        part_id=str(values["part_id"]),
        recipe_change=bool(values.get("recipe_change", False)),
        trigger_edges=trigger_edges,
    )
