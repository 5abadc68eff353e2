"""The PLC link for the handshake: the appliance as Modbus server (ServerLink, our protocol core in
pdu.py / server.py) or as client of the PLC (ClientLink in client.py, pymodbus), over TCP or RTU.

Every link offers: ``start()``, ``stop(hold_s)``, ``read_inputs()`` → handshake Inputs,
``write_outputs(outputs)``, ``take_restart()`` → why the PLC is to be taken as restarted ("" = it
is not; client mode only) and ``health()`` → (status, detail) with status one of ``starting``,
``ok``, ``lost`` (port or connection gone) and ``absent`` (server mode: no master request for
``absent_after_s``). See docs/plc.md.
"""

from __future__ import annotations

import asyncio
import struct
import time

from .client import ClientLink
from .codec import TextFormat, decode, encode
from .handshake import Inputs
from .pdu import READ_FC, Bank
from .server import RtuServer, TcpServer, open_serial
from .settings import LinkError, LinkSettings, StartError, input_names, inputs_from
from .signals import SignalMap

__all__ = [
    "ClientLink",
    "Link",
    "LinkError",
    "LinkSettings",
    "ServerLink",
    "StartError",
    "decode",
    "encode",
    "make_link",
]


class ServerLink:
    """The appliance as Modbus server: the PLC writes coils/holding registers, reads the rest."""

    def __init__(self, signal_map: SignalMap, settings: LinkSettings):
        self.map, self.settings = signal_map, settings
        self.text = TextFormat(settings.part_id_encoding, settings.part_id_byte_order)
        self.bank = Bank.for_map(signal_map)
        self._inputs = input_names(signal_map)
        if settings.transport == "tcp":
            self.server: TcpServer | RtuServer = TcpServer(self.bank, settings.device_id, settings.host, settings.port)
        else:
            self.server = RtuServer(
                self.bank,
                settings.device_id,
                settings.serial_port,
                settings.baudrate,
                settings.parity,
                settings.reconnect_min_s,
                settings.reconnect_max_s,
            )
        self._online_read: asyncio.Event | None = None
        self._online_read_at: float | None = None  # when the PLC last read `online`
        self._online_period = 0.0  # its polling period (moving average)
        # Rising edges the PLC writes are counted at write time, so a pulse shorter than poll_ms
        # still reaches the handshake: trigger as a count of edges (a 1→0→1 re-trigger between two
        # reads is one), results_ack and recipe_change as high for one read, then the level.
        self._edges = [
            s
            for s in (
                signal_map[n]
                for n in ("trigger", "results_ack", "recipe_change")
                if n in {x.name for x in signal_map.signals}
            )
            if s.table == "coil"
        ]
        self._levels = {s.name: False for s in self._edges}
        self._rises = {s.name: 0 for s in self._edges}
        self.server.on_request = self._on_request

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, hold_s: float = 0.0) -> None:
        """Close, after the PLC has read ``online`` once more (at most ``hold_s``; at once when no
        PLC is polling). The caller publishes online = 0 / ready = 0 before calling."""
        last = self._online_read_at
        if hold_s > 0 and self.server.status == "ok" and last is not None and time.monotonic() - last < hold_s:
            # wait for one more poll of `online`: at most three of the PLC's polling periods
            self._online_read = asyncio.Event()
            try:
                await asyncio.wait_for(self._online_read.wait(), min(hold_s, 3 * self._online_period + 0.05))
            except asyncio.TimeoutError:  # not the builtin one on Python 3.10
                pass
        await self.server.stop()

    def _on_request(self, request: bytes) -> None:
        if request and request[0] in (5, 15):  # a coil write
            for s in self._edges:
                level = bool(self.bank.tables["coil"][s.address])
                if level and not self._levels[s.name]:
                    self._rises[s.name] += 1
                self._levels[s.name] = level
        self._watch_online(request)

    def _watch_online(self, request: bytes) -> None:
        online = self.map["online"]
        if len(request) == 5 and READ_FC.get(request[0]) == online.table:
            address, count = struct.unpack(">HH", request[1:])
            if address <= online.address < address + count:
                now = time.monotonic()
                if self._online_read_at is not None:
                    gap = now - self._online_read_at
                    self._online_period = gap if not self._online_period else 0.7 * self._online_period + 0.3 * gap
                self._online_read_at = now
                if self._online_read is not None:
                    self._online_read.set()

    def health(self) -> tuple[str, str]:
        if self.server.status != "ok":
            return self.server.status, self.server.detail
        last = self.server.last_request_at
        limit = self.settings.absent_after_s
        if limit > 0 and time.monotonic() - max(last or 0.0, self.server.reachable_since) > limit:
            return "absent", f"no Modbus request from the PLC for more than {limit:g} s"
        return ("ok", "") if last is not None else ("starting", "waiting for the PLC's first request")

    def take_restart(self) -> str:
        """Server mode cannot tell a restarted PLC (masters reconnect at will): never ("")."""
        return ""

    def _get(self, name: str):
        s = self.map[name]
        return decode(s, self.bank.get(s.table, s.address, s.count), self.text)

    async def read_inputs(self) -> Inputs:
        values = {name: self._get(name) for name in self._inputs}
        trigger_edges = self._rises.get("trigger")
        for name, rises in self._rises.items():
            if rises and name != "trigger":  # a pulse that may already be over: seen high once
                values[name] = True
            self._rises[name] = 0
        return inputs_from(values, trigger_edges)

    async def write_outputs(self, outputs: dict[str, object]) -> None:
        """All at once, with no await in between: a request is answered either before or after."""
        for name, value in outputs.items():
            try:
                s = self.map[name]
            except KeyError:
                continue
            self.bank.set(s.table, s.address, encode(s, value, self.text))


Link = ServerLink | ClientLink  # what make_link gives: the station uses only the members listed above


def make_link(signal_map: SignalMap, settings: LinkSettings) -> Link:
    return ServerLink(signal_map, settings) if settings.mode == "server" else ClientLink(signal_map, settings)


def preflight(settings: LinkSettings) -> None:
    """Fail fast, in one line (StartError), on what would stop the link from starting: a TCP port in
    use (server mode), a serial device that is missing or opened by another program."""
    import socket

    if settings.transport == "rtu":
        open_serial(settings.serial_port, settings.baudrate, settings.parity).close()
    elif settings.mode == "server":
        with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((settings.host, settings.port))
            except OSError as err:
                raise StartError(
                    f"cannot listen for Modbus TCP on {settings.host}:{settings.port}: {err.strerror or err}"
                ) from None
