"""Values ⇄ Modbus words and bits for each signal type (docs/plc.md, "Addressing").

* ``bool``   one bit (coil or discrete input)
* ``uint16`` one register
* ``uint32`` two registers, high word first
* ``text``   ``count`` registers, two bytes per register; the byte order inside a register and the
  character encoding (ascii, utf-8, shift_jis) are set per station (``plc.part_id_byte_order``,
  ``plc.part_id_encoding``). Padding is NUL. Bytes that do not decode are kept losslessly as
  backslash escapes (``b"\\xff"`` → ``"\\\\xff"``), so a garbled part_id is visible as such in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .signals import Signal

Encoding = Literal["ascii", "utf-8", "shift_jis"]
ByteOrder = Literal["high_first", "low_first"]


@dataclass(frozen=True)
class TextFormat:
    encoding: Encoding = "ascii"
    byte_order: ByteOrder = "high_first"  # first character in the high byte of each register


ASCII = TextFormat()


def encode(signal: Signal, value, text: TextFormat = ASCII) -> list[int] | list[bool]:
    """A signal's value as Modbus bits or 16-bit words."""
    if signal.type == "bool":
        return [bool(value)]
    if signal.type == "uint16":
        return [int(value) & 0xFFFF]
    if signal.type == "uint32":
        v = int(value) & 0xFFFFFFFF
        return [v >> 16, v & 0xFFFF]
    data = str(value).encode(text.encoding, "replace")
    data = _truncate(data[: 2 * signal.count], text.encoding).ljust(2 * signal.count, b"\0")
    if text.byte_order == "high_first":
        return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def decode(signal: Signal, raw: list, text: TextFormat = ASCII) -> bool | int | str:
    if signal.type == "bool":
        return bool(raw[0])
    if signal.type == "uint16":
        return int(raw[0])
    if signal.type == "uint32":
        return (int(raw[0]) << 16) | int(raw[1])
    if text.byte_order == "high_first":
        data = b"".join(bytes([(w >> 8) & 0xFF, w & 0xFF]) for w in raw)
    else:
        data = b"".join(bytes([w & 0xFF, (w >> 8) & 0xFF]) for w in raw)
    return data.split(b"\0")[0].decode(text.encoding, "backslashreplace").strip()


def _truncate(data: bytes, encoding: str) -> bytes:
    """Drop a multi-byte character cut in half by the register limit."""
    for cut in range(4):
        try:
            (data[: len(data) - cut]).decode(encoding)
            return data[: len(data) - cut]
        except UnicodeDecodeError:
            continue
    return data
