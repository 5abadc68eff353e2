"""A PLC's memory served by pymodbus, for client-mode tests (the appliance polls and writes there)."""

from __future__ import annotations

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_inspect.plc.codec import decode, encode
from edge_inspect.plc.signals import build_map

from .wait import async_wait_until

CLIENT_MAP = build_map(mode="client")
FC = {"coil": 1, "holding_register": 3}
CORE = ("result_id", "verdict", "defect_count", "failed_checks", "error_code", "pass", "fail", "error")


class PLCServer:
    """A PLC's memory served by pymodbus; snapshots the results the instant results_valid rises."""

    def __init__(self, port: int | str):
        self.port = port  # a TCP port, or a serial device (RTU)
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.snapshots: list[dict] = []
        self.violations: list[tuple] = []
        self.written: list[tuple[str, object]] = []  # (signal, value) of every write, in order

    async def _action(self, func_code, start_address, address, count, registers, values):
        if values is None:
            return None
        table = "coil" if func_code in (5, 15) else "holding_register"
        for s in CLIENT_MAP.in_table(table):
            if address <= s.address and s.end <= address + len(values):
                self.written.append((s.name, decode(s, values[s.address - address : s.end - address])))
        if await self.get("results_valid"):  # nothing of a result may change under a high results_valid
            table = "coil" if func_code in (5, 15) else "holding_register"
            for name in CORE:
                s = CLIENT_MAP[name]
                if s.table == table and address <= s.address < address + len(values):
                    new = decode(s, values[s.address - address : s.end - address])
                    if new != await self.get(name):
                        self.violations.append((name, await self.get(name), new))
        valid = CLIENT_MAP["results_valid"]
        if func_code not in (5, 15) or not address <= valid.address < address + len(values):
            return None
        rising = values[valid.address - address] and not await self.get("results_valid")  # before the write
        if rising:
            self.snapshots.append(
                {
                    n: await self.get(n)
                    for n in (
                        "result_id",
                        "verdict",
                        "defect_count",
                        "failed_checks",
                        "error_code",
                        "pass",
                        "fail",
                        "error",
                    )
                }
            )
        return None

    async def start(self) -> None:
        device = SimDevice(id=1, action=self._action, simdata=(
            [SimData(address=0, count=64, values=False, datatype=DataType.BITS)],
            [SimData(address=0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(address=0, count=128, values=0, datatype=DataType.REGISTERS)],
            [SimData(address=0, count=16, values=0, datatype=DataType.REGISTERS)]))  # fmt: skip
        if isinstance(self.port, str):
            self.server = ModbusSerialServer(device, port=self.port, baudrate=115200)
        else:
            self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        await self.server.shutdown()

    async def get(self, name: str):
        s = CLIENT_MAP[name]
        return decode(s, await self.server.context.async_getValues(1, FC[s.table], s.address, s.count))

    async def put(self, name: str, value) -> None:
        s = CLIENT_MAP[name]
        await self.server.context.async_setValues(1, FC[s.table], s.address, encode(s, value))

    async def wait(self, name: str, value, timeout: float = 20) -> None:
        async def ok():
            return await self.get(name) == value

        await async_wait_until(ok, timeout, f"PLC memory {name} == {value}", poll_s=0.002)

    async def cycle(self, trigger_id: int) -> None:
        await self.wait("ready", True)
        await self.put("trigger_id", trigger_id)
        await self.put("recipe", 1)
        await self.put("trigger", True)
        await self.wait("results_valid", True)
        await self.put("trigger", False)
        await self.put("results_ack", True)
        await self.wait("results_valid", False)
        await self.put("results_ack", False)
