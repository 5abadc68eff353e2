"""A simulated PLC: a Modbus TCP client that drives the handshake the way a PLC program would.

Used by ``edge-inspect demo`` and by tests; it talks to the appliance only over Modbus.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .codec import decode, encode
from .signals import SignalMap


class PLCTimeout(Exception):
    """The appliance did not answer or did not reach the expected state in time."""


@dataclass(frozen=True)
class PLCResult:
    trigger_id: int
    part_id: str
    result_id: int
    verdict: int
    defect_count: int
    failed_checks: int
    error_code: int
    cycle_ms: int
    trigger_to_valid_ms: float


class SimulatedPLC:
    """Drives the appliance through any pymodbus async client (TCP by default, or serial RTU)."""

    def __init__(
        self, signal_map: SignalMap, host: str = "127.0.0.1", port: int = 5020, device_id: int = 1, client=None
    ):
        self.map, self.device_id = signal_map, device_id
        self.client = client or AsyncModbusTcpClient(host, port=port, timeout=2)

    async def connect(self, attempts: int = 50) -> None:
        for _ in range(attempts):
            if await self.client.connect():
                return
            await asyncio.sleep(0.1)
        raise PLCTimeout("cannot connect to the appliance")

    def close(self) -> None:
        self.client.close()

    async def read(self, name: str):
        s = self.map[name]
        fn = {
            "coil": self.client.read_coils,
            "discrete_input": self.client.read_discrete_inputs,
            "holding_register": self.client.read_holding_registers,
            "input_register": self.client.read_input_registers,
        }[s.table]
        try:
            r = await fn(s.address, count=s.count, device_id=self.device_id)
        except ModbusException as err:
            raise PLCTimeout(f"read {name}: {err}") from None
        if r.isError():
            raise PLCTimeout(f"read {name}: {r}")
        return decode(s, list(r.bits if s.table in ("coil", "discrete_input") else r.registers)[: s.count])

    async def write(self, name: str, value) -> None:
        s = self.map[name]
        raw = encode(s, value)
        try:
            if s.table == "coil":
                r = await self.client.write_coils(s.address, [bool(v) for v in raw], device_id=self.device_id)
            else:
                r = await self.client.write_registers(s.address, [int(v) for v in raw], device_id=self.device_id)
        except ModbusException as err:
            raise PLCTimeout(f"write {name}: {err}") from None
        if r.isError():
            raise PLCTimeout(f"write {name}: {r}")

    async def wait_for(self, name: str, value, timeout_s: float = 30.0, poll_s: float = 0.005) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.read(name) == value:
                return time.monotonic()
            await asyncio.sleep(poll_s)
        raise PLCTimeout(f"{name} did not become {value} within {timeout_s} s")

    async def cycle(self, trigger_id: int, recipe: int = 1, part_id: str = "", timeout_s: float = 30.0) -> PLCResult:
        """One full handshake: wait ready → write ids → trigger → results_valid → read → ack → release."""
        await self.wait_for("ready", True, timeout_s)
        await self.write("trigger_id", trigger_id)
        await self.write("recipe", recipe)
        await self.write("part_id", part_id)
        t0 = time.monotonic()
        await self.write("trigger", True)
        t1 = await self.wait_for("results_valid", True, timeout_s)
        values = {
            name: await self.read(name)
            for name in ("result_id", "verdict", "defect_count", "failed_checks", "error_code", "cycle_ms")
        }
        await self.write("trigger", False)
        await self.write("results_ack", True)
        await self.wait_for("results_valid", False, timeout_s)
        await self.write("results_ack", False)
        return PLCResult(trigger_id=trigger_id, part_id=part_id, trigger_to_valid_ms=(t1 - t0) * 1000, **values)
