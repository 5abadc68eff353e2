"""Modbus transport for the handshake: pymodbus server (the appliance is the server) or client
(the PLC is the server and the appliance polls it), each over TCP or RTU on a serial port.

Everything pymodbus-specific lives in this module (pymodbus 3.16: the SimData / SimDevice
datastore). Both links offer the same two calls: ``read_inputs()`` → handshake Inputs, and
``write_outputs(outputs)`` for the appliance's signals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .handshake import Inputs
from .signals import BIT_TABLES, Signal, SignalMap

# Modbus function codes used to read / write each table from inside the server's datastore.
_READ_FC = {"coil": 1, "discrete_input": 2, "holding_register": 3, "input_register": 4}


class LinkError(Exception):
    """The PLC link failed (connection refused, timeout, exception response)."""


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
    timeout_s: float = 1.0


def encode(signal: Signal, value) -> list[int] | list[bool]:
    """A signal's value as Modbus bits or 16-bit words."""
    if signal.type == "bool":
        return [bool(value)]
    if signal.type == "uint16":
        return [int(value) & 0xFFFF]
    if signal.type == "uint32":
        v = int(value) & 0xFFFFFFFF
        return [v >> 16, v & 0xFFFF]
    data = str(value).encode("ascii", "replace")[: 2 * signal.count].ljust(2 * signal.count, b"\0")
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


def decode(signal: Signal, raw: list) -> bool | int | str:
    if signal.type == "bool":
        return bool(raw[0])
    if signal.type == "uint16":
        return int(raw[0])
    if signal.type == "uint32":
        return (int(raw[0]) << 16) | int(raw[1])
    data = b"".join(bytes([(w >> 8) & 0xFF, w & 0xFF]) for w in raw)
    return data.split(b"\0")[0].decode("ascii", "replace").strip()


def _inputs(values: dict[str, object]) -> Inputs:
    return Inputs(trigger=bool(values["trigger"]), results_ack=bool(values["results_ack"]),
                  trigger_id=int(values["trigger_id"]), recipe=int(values["recipe"]), part_id=str(values["part_id"]))


INPUT_SIGNALS = ("trigger", "results_ack", "trigger_id", "recipe", "part_id")


class ServerLink:
    """The appliance as Modbus server: the PLC writes coils/holding registers, reads the rest."""

    def __init__(self, signal_map: SignalMap, settings: LinkSettings):
        self.map, self.settings = signal_map, settings
        self.changed = asyncio.Event()  # set whenever the PLC writes something
        self.requests = 0
        blocks = []
        for table in ("coil", "discrete_input", "holding_register", "input_register"):
            span = max(1, signal_map.span(table))
            if table in BIT_TABLES:
                blocks.append([SimData(address=0, count=span, values=False, datatype=DataType.BITS)])
            else:
                blocks.append([SimData(address=0, count=span, values=0, datatype=DataType.REGISTERS)])
        device = SimDevice(id=settings.device_id, simdata=tuple(blocks), action=self._on_request)
        if settings.transport == "tcp":
            self.server = ModbusTcpServer(device, address=(settings.host, settings.port))
        else:
            self.server = ModbusSerialServer(device, port=settings.serial_port, baudrate=settings.baudrate,
                                             parity=settings.parity)
        self._task: asyncio.Task | None = None

    async def _on_request(self, func_code, start_address, address, count, registers, values):
        self.requests += 1
        if values is not None:
            self.changed.set()
        return None

    async def start(self) -> None:
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        await self.server.shutdown()

    async def _get(self, signal: Signal) -> list:
        values = await self.server.context.async_getValues(self.settings.device_id, _READ_FC[signal.table],
                                                           signal.address, signal.count)
        if not isinstance(values, list):
            raise LinkError(f"datastore refused {signal.name} at {signal.table} {signal.address}: {values}")
        return values

    async def read_inputs(self) -> Inputs:
        return _inputs({name: decode(self.map[name], await self._get(self.map[name])) for name in INPUT_SIGNALS})

    async def write_outputs(self, outputs: dict[str, object]) -> None:
        for name, value in outputs.items():
            signal = self.map[name]
            await self.server.context.async_setValues(self.settings.device_id, _READ_FC[signal.table],
                                                      signal.address, encode(signal, value))


class ClientLink:
    """The PLC as Modbus server: the appliance polls the inputs and writes its outputs there.

    In this mode every signal must live in a table the appliance can write or read:
    outputs in coils / holding registers (see ``client_map``)."""

    def __init__(self, signal_map: SignalMap, settings: LinkSettings):
        self.map, self.settings = signal_map, settings
        if settings.transport == "tcp":
            self.client = AsyncModbusTcpClient(settings.host, port=settings.port, timeout=settings.timeout_s,
                                               retries=1, reconnect_delay=0.5, reconnect_delay_max=5)
        else:
            self.client = AsyncModbusSerialClient(settings.serial_port, baudrate=settings.baudrate,
                                                  parity=settings.parity, timeout=settings.timeout_s, retries=1)
        self._last: dict[str, object] = {}

    async def start(self) -> None:
        if not await self.client.connect():
            raise LinkError(f"cannot connect to PLC at {self._where()}")

    async def stop(self) -> None:
        self.client.close()

    def _where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port}" if s.transport == "tcp" else s.serial_port

    async def _call(self, coro, what: str):
        try:
            response = await coro
        except (ModbusException, OSError, asyncio.TimeoutError) as err:
            raise LinkError(f"PLC {self._where()}: {what}: {err}") from None
        if response.isError():
            raise LinkError(f"PLC {self._where()}: {what}: exception response {response}")
        return response

    async def _read(self, signal: Signal) -> list:
        dev = self.settings.device_id
        reader = {"coil": self.client.read_coils, "discrete_input": self.client.read_discrete_inputs,
                  "holding_register": self.client.read_holding_registers,
                  "input_register": self.client.read_input_registers}[signal.table]
        r = await self._call(reader(signal.address, count=signal.count, device_id=dev), f"read {signal.name}")
        return (r.bits if signal.table in BIT_TABLES else r.registers)[: signal.count]

    async def read_inputs(self) -> Inputs:
        return _inputs({name: decode(self.map[name], await self._read(self.map[name])) for name in INPUT_SIGNALS})

    async def write_outputs(self, outputs: dict[str, object]) -> None:
        dev = self.settings.device_id
        for name, value in outputs.items():
            if self._last.get(name) == value:
                continue  # only changes go on the wire
            signal = self.map[name]
            raw = encode(signal, value)
            if signal.table == "coil":
                await self._call(self.client.write_coils(signal.address, raw, device_id=dev), f"write {name}")
            elif signal.table == "holding_register":
                await self._call(self.client.write_registers(signal.address, raw, device_id=dev), f"write {name}")
            else:
                raise LinkError(f"signal {name} is in {signal.table}, which a Modbus client cannot write")
            self._last[name] = value


def client_overrides() -> dict[str, dict]:
    """Default relocation of the appliance's outputs for client mode: discrete inputs → coils from
    16, input registers → holding registers from 100 (a PLC's own memory is writable there)."""
    from .signals import DEFAULT_MAP

    out: dict[str, dict] = {}
    for s in DEFAULT_MAP:
        if s.table == "discrete_input":
            out[s.name] = {"table": "coil", "address": 16 + s.address}
        elif s.table == "input_register":
            out[s.name] = {"table": "holding_register", "address": 100 + s.address}
    return out


def make_link(signal_map: SignalMap, settings: LinkSettings) -> ServerLink | ClientLink:
    return ServerLink(signal_map, settings) if settings.mode == "server" else ClientLink(signal_map, settings)
