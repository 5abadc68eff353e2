"""The Modbus server's protocol core, without I/O: the four tables, request PDUs → response PDUs,
MBAP (TCP) and RTU framing. docs/plc.md ("Conformance") lists what is answered and how.

Supported functions: 1 read coils, 2 read discrete inputs, 3 read holding registers, 4 read input
registers, 5 write single coil, 6 write single register, 15 write multiple coils, 16 write multiple
registers. Everything else gets exception 01. Exceptions follow the Modbus application protocol
v1.1b3: 01 illegal function, 02 illegal data address, 03 illegal data value (bad quantity, byte
count, length, or a coil value other than 0x0000 / 0xFF00); the exception response's function
code is the request's + 0x80.

Why our own core and not pymodbus's server (pymodbus 3.16.1, checked against its source): an MBAP
header with a non-zero protocol id makes its framer wait forever (the connection stops answering
and is never closed, and every later segment logs again); unit ids outside its device list raise
``KeyError`` per request; its RTU framer skips unknown function codes byte by byte (no exception
reply) and answers frames for every id in its device list; bad quantities are answered with
function code 0x80 + 0 ("80 01"); FC5 accepts any non-zero value as ON. The client side still
uses pymodbus (client.py).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from .signals import BIT_TABLES, SignalMap

TABLES = ("coil", "discrete_input", "holding_register", "input_register")
READ_FC = {1: "coil", 2: "discrete_input", 3: "holding_register", 4: "input_register"}
WRITE_FC = (5, 6, 15, 16)
MAX_READ = {1: 2000, 2: 2000, 3: 125, 4: 125}
MAX_WRITE = {15: 1968, 16: 123}

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE, GATEWAY_NO_RESPONSE = 1, 2, 3, 4, 0x0B


class ModbusError(Exception):
    def __init__(self, code: int):
        super().__init__(f"exception {code:02X}")
        self.code = code


@dataclass
class Bank:
    """The appliance's four tables, sized to the map (addresses past the map are exception 02)."""

    tables: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def for_map(cls, signal_map: SignalMap) -> Bank:
        return cls({t: [0] * max(1, signal_map.span(t)) for t in TABLES})

    def get(self, table: str, address: int, count: int) -> list[int]:
        values = self.tables[table]
        if address < 0 or address + count > len(values):
            raise ModbusError(ILLEGAL_ADDRESS)
        return values[address : address + count]

    def set(self, table: str, address: int, values: Sequence[int]) -> None:
        store = self.tables[table]
        if address < 0 or address + len(values) > len(store):
            raise ModbusError(ILLEGAL_ADDRESS)
        if table in BIT_TABLES:
            values = [1 if v else 0 for v in values]
        store[address : address + len(values)] = [int(v) & 0xFFFF for v in values]


def exception_pdu(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code])


def _pack_bits(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


def handle_pdu(bank: Bank, pdu: bytes) -> bytes:
    """One request PDU (function code + data) → its response PDU (never raises)."""
    if not pdu:
        return exception_pdu(0, ILLEGAL_FUNCTION)
    fc, data = pdu[0], pdu[1:]
    try:
        return bytes([fc]) + _dispatch(bank, fc, data)
    except ModbusError as err:
        return exception_pdu(fc, err.code)


def _dispatch(bank: Bank, fc: int, data: bytes) -> bytes:
    if fc in READ_FC:
        if len(data) != 4:
            raise ModbusError(ILLEGAL_VALUE)
        address, count = struct.unpack(">HH", data)
        if not 1 <= count <= MAX_READ[fc]:
            raise ModbusError(ILLEGAL_VALUE)
        values = bank.get(READ_FC[fc], address, count)
        if fc in (1, 2):
            body = _pack_bits(values)
        else:
            body = struct.pack(f">{count}H", *values)
        return bytes([len(body)]) + body
    if fc == 5:
        if len(data) != 4:
            raise ModbusError(ILLEGAL_VALUE)
        address, value = struct.unpack(">HH", data)
        if value not in (0x0000, 0xFF00):
            raise ModbusError(ILLEGAL_VALUE)
        bank.set("coil", address, [value == 0xFF00])
        return data
    if fc == 6:
        if len(data) != 4:
            raise ModbusError(ILLEGAL_VALUE)
        address, value = struct.unpack(">HH", data)
        bank.set("holding_register", address, [value])
        return data
    if fc in (15, 16):
        if len(data) < 5:
            raise ModbusError(ILLEGAL_VALUE)
        address, count, nbytes = struct.unpack(">HHB", data[:5])
        payload = data[5:]
        expected = (count + 7) // 8 if fc == 15 else 2 * count
        if not 1 <= count <= MAX_WRITE[fc] or nbytes != expected or len(payload) != nbytes:
            raise ModbusError(ILLEGAL_VALUE)
        if fc == 15:
            bank.set("coil", address, _unpack_bits(payload, count))
        else:
            bank.set("holding_register", address, list(struct.unpack(f">{count}H", payload)))
        return data[:4]
    raise ModbusError(ILLEGAL_FUNCTION)


def is_write(pdu: bytes) -> bool:
    return bool(pdu) and pdu[0] in WRITE_FC


# -- TCP (MBAP) --------------------------------------------------------------------------------------
MBAP_LEN = 7
MAX_MBAP_LENGTH = 254  # unit id + PDU of at most 253 bytes


def parse_mbap(header: bytes) -> tuple[int, int, int]:
    """(transaction id, length of unit id + PDU, unit id); raises ValueError for a header no
    Modbus TCP master sends (protocol id ≠ 0, length outside 2..254): the stream cannot be
    resynchronised after it, so the connection is closed."""
    tid, pid, length, unit = struct.unpack(">HHHB", header)
    if pid != 0:
        raise ValueError(f"protocol id {pid} (must be 0)")
    if not 2 <= length <= MAX_MBAP_LENGTH:
        raise ValueError(f"MBAP length {length} outside 2..{MAX_MBAP_LENGTH}")
    return tid, length, unit


def build_mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


# -- RTU ---------------------------------------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ b) & 0xFF]
    return crc


def rtu_frame(address: int, pdu: bytes) -> bytes:
    body = bytes([address]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def rtu_request_length(buf: bytes | bytearray) -> int | None:
    """Length of the request frame at the start of ``buf`` when its function code fixes it;
    0 when more bytes are needed to tell; None for a function code we do not know (the frame then
    ends at the next silence on the line)."""
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 0 if len(buf) < 7 else 9 + buf[6]
    return None
