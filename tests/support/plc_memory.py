"""A PLC's memory as a Modbus TCP server in a process of its own, so a test can kill -9 it and start
a new one with empty memory, as a PLC restart does. Standard library only: written apart from
pymodbus and from the code under test.

    python tests/support/plc_memory.py PORT LOG ONLINE READY VALID RESULT_ID

Serves function codes 1, 3, 5, 6, 15 and 16 on 64 coils and 128 holding registers (unit id
ignored). Appends JSON lines to LOG: ``{"listening": t}`` once it accepts connections, then
``{"rise": t, "result_id": …, "online": …}`` each time a write raises coil VALID
(``results_valid``; RESULT_ID is a holding register), and ``{"ready": t}`` the first time coil
READY is written 1;
``t`` is time.monotonic(), the same clock in every process of the machine.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time

COILS, REGISTERS = 64, 128


class Memory:
    def __init__(self, log_path: str, online: int, ready: int, valid: int, result_id: int):
        self.coils = [0] * COILS
        self.registers = [0] * REGISTERS
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
        self.online, self.ready, self.valid, self.result_id = online, ready, valid, result_id
        self.ready_seen = False

    def note(self, **fields) -> None:
        self.log.write(json.dumps(fields) + "\n")

    def set_coils(self, address: int, bits: list[int]) -> None:
        before = self.coils[self.valid]
        self.coils[address : address + len(bits)] = bits
        now = time.monotonic()
        if self.coils[self.valid] and not before:
            self.note(rise=now, result_id=self.registers[self.result_id], online=self.coils[self.online])
        if self.coils[self.ready] and not self.ready_seen:
            self.ready_seen = True
            self.note(ready=now)

    def answer(self, pdu: bytes) -> bytes:
        fc = pdu[0]
        if fc in (1, 3):
            address, count = struct.unpack(">HH", pdu[1:5])
            if fc == 1:
                bits = self.coils[address : address + count]
                packed = bytes(sum(bit << i for i, bit in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
                return bytes([fc, len(packed)]) + packed
            words = self.registers[address : address + count]
            return bytes([fc, 2 * len(words)]) + struct.pack(f">{len(words)}H", *words)
        if fc == 5:
            address, value = struct.unpack(">HH", pdu[1:5])
            self.set_coils(address, [1 if value == 0xFF00 else 0])
            return pdu[:5]
        if fc == 6:
            address, value = struct.unpack(">HH", pdu[1:5])
            self.registers[address] = value
            return pdu[:5]
        if fc == 15:
            address, count = struct.unpack(">HH", pdu[1:5])
            data = pdu[6:]
            self.set_coils(address, [(data[i // 8] >> (i % 8)) & 1 for i in range(count)])
            return pdu[:5]
        if fc == 16:
            address, count = struct.unpack(">HH", pdu[1:5])
            self.registers[address : address + count] = struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count])
            return pdu[:5]
        return bytes([fc | 0x80, 1])

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                response = self.answer(await reader.readexactly(length - 1))
                writer.write(struct.pack(">HHHB", tid, 0, len(response) + 1, unit) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def main(port: int, log_path: str, online: int, ready: int, valid: int, result_id: int) -> None:
    memory = Memory(log_path, online, ready, valid, result_id)
    server = await asyncio.start_server(memory.connection, "127.0.0.1", port)
    memory.note(listening=time.monotonic())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], *(int(a) for a in sys.argv[3:7])))
