"""The appliance as Modbus server (slave): TCP and RTU on a serial port, over the protocol core in
pdu.py. Knows nothing of the handshake: the link (modbus.py) reads and writes the Bank.

Addressing rules (docs/plc.md, "Addressing"):
* TCP answers unit ids 0, 255 and ``device_id``; any other unit id gets exception 0x0B (gateway
  target device failed to respond), so a master configured for the wrong unit sees why.
* RTU answers only ``device_id``; frames for other addresses are ignored (another slave on the bus
  answers them). Address 0 is broadcast: write functions (5, 6, 15, 16) are applied and never
  answered; broadcast reads are ignored (Modbus over serial line v1.02, 2.2).
* A malformed MBAP header (protocol id ≠ 0, length outside 2..254) closes that connection; other
  connections are not affected. Malformed input is logged at most once per ``LOG_EVERY_S`` with a
  count of what was suppressed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from . import pdu as mb
from .settings import StartError

log = logging.getLogger("edge_inspect.plc")
LOG_EVERY_S = 10.0


class RateLimitedLog:
    """One warning per ``every_s``; the next one says how many were suppressed in between."""

    def __init__(self, every_s: float = LOG_EVERY_S):
        self.every_s, self._next, self._suppressed = every_s, 0.0, 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more suppressed)"
        self._next, self._suppressed = now + self.every_s, 0
        log.warning(message)


class ServerCore:
    """What TCP and RTU servers share: the bank, the device id, and when a master last asked."""

    def __init__(self, bank: mb.Bank, device_id: int):
        self.bank, self.device_id = bank, device_id
        self.last_request_at: float | None = None
        # since when a master could reach us (started, or the serial port reopened): a PLC is
        # "absent" only after being silent for timeout_s from here, not while the port was gone
        self.reachable_since = time.monotonic()
        self.on_request: Callable[[bytes], None] | None = None
        self.bad_input = RateLimitedLog()

    def serve(self, pdu: bytes) -> bytes:
        self.last_request_at = time.monotonic()
        response = mb.handle_pdu(self.bank, pdu)
        if self.on_request is not None:
            self.on_request(pdu)
        return response


class TcpServer(ServerCore):
    def __init__(self, bank: mb.Bank, device_id: int, host: str, port: int):
        super().__init__(bank, device_id)
        self.host, self.port = host, port
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.status, self.detail = "ok", ""

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._connection, self.host, self.port)
        except OSError as err:
            raise StartError(
                f"cannot listen for Modbus TCP on {self.host}:{self.port}: {err.strerror or err}"
            ) from None
        self.reachable_since = time.monotonic()
        if self.port == 0:  # the port the system picked, for whoever connects next
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _answer(self, unit: int, request: bytes) -> bytes:
        if unit not in (0, 255, self.device_id):
            return mb.exception_pdu(request[0] if request else 0, mb.GATEWAY_NO_RESPONSE)
        return self.serve(request)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            while True:
                header = await reader.readexactly(mb.MBAP_LEN)
                try:
                    tid, length, unit = mb.parse_mbap(header)
                except ValueError as err:
                    self.bad_input.warning(
                        f"Modbus TCP {peer}: malformed MBAP header {header.hex(' ')}: {err}; connection closed"
                    )
                    break
                request = await reader.readexactly(length - 1)
                writer.write(mb.build_mbap(tid, unit, self._answer(unit, request)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def open_serial(port: str, baudrate: int, parity: str):
    """The serial port, non-blocking, 8 data bits, 1 stop bit, locked against other programs
    (pyserial, a pymodbus dependency); StartError names a missing or busy device in one line."""
    import serial

    try:
        return serial.Serial(port, baudrate, parity=parity, bytesize=8, stopbits=1, timeout=0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as err:
        reason = str(err)
        if "No such file" in reason:
            reason = "no such device"
        elif "lock" in reason.lower() or "busy" in reason.lower():
            reason = "busy (opened by another program)"
        raise StartError(f"serial port {port}: {reason}") from None


class RtuServer(ServerCore):
    """Modbus RTU slave on a serial port (pyserial for opening and line settings, the fd on the
    event loop for I/O). A port that disappears (USB adapter unplugged, pty closed) is reported
    lost and reopened with backoff."""

    def __init__(
        self,
        bank: mb.Bank,
        device_id: int,
        port: str,
        baudrate: int,
        parity: str,
        reopen_min_s: float = 0.2,
        reopen_max_s: float = 5.0,
    ):
        super().__init__(bank, device_id)
        self.port, self.baudrate, self.parity = port, baudrate, parity
        self.reopen_min_s, self.reopen_max_s = reopen_min_s, reopen_max_s
        self.gap_s = max(0.02, 3.5 * 11 / baudrate)  # end of an unknown frame / discard garbage
        self.status, self.detail = "ok", ""
        self._serial = None
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._reopen: asyncio.Task | None = None
        self._closing = False

    def _open(self) -> None:
        ser = open_serial(self.port, self.baudrate, self.parity)
        self._serial = ser
        self._buf.clear()
        asyncio.get_running_loop().add_reader(ser.fileno(), self._readable)
        self.status, self.detail = "ok", ""
        self.reachable_since = time.monotonic()

    async def start(self) -> None:
        self._open()

    async def stop(self) -> None:
        self._closing = True
        if self._reopen is not None:
            self._reopen.cancel()
        self._close_port()

    def _close_port(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._serial is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            except (ValueError, OSError):
                pass
            try:
                self._serial.close()
            except OSError:
                pass
            self._serial = None

    def _lost(self, why: str) -> None:
        self._close_port()
        self.status, self.detail = "lost", f"serial port {self.port}: {why}"
        log.warning("%s; reopening with backoff", self.detail)
        if not self._closing and (self._reopen is None or self._reopen.done()):
            self._reopen = asyncio.get_running_loop().create_task(self._reopen_loop())

    async def _reopen_loop(self) -> None:
        delay = self.reopen_min_s
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                self._open()
                log.warning("serial port %s reopened", self.port)
                return
            except StartError as err:
                self.detail = str(err)
                delay = min(delay * 2, self.reopen_max_s)

    def _fd(self) -> int:
        """The open port's file descriptor (only called while it is open: the reader is registered then)."""
        if self._serial is None:
            raise OSError("serial port closed")
        return self._serial.fileno()

    def _readable(self) -> None:
        try:
            data = os.read(self._fd(), 512)
        except BlockingIOError:
            return
        except OSError as err:
            self._lost(err.strerror or str(err))
            return
        if not data:
            self._lost("end of file (device gone)")
            return
        self._buf += data
        self._parse()
        if self._timer is not None:
            self._timer.cancel()
        if self._buf:
            self._timer = asyncio.get_running_loop().call_later(self.gap_s, self._silence)

    def _parse(self) -> None:
        while self._buf:
            n = mb.rtu_request_length(self._buf)
            if n is None or n == 0 or len(self._buf) < n:
                return  # unknown function (ends at the next silence) or more bytes to come
            if mb.rtu_crc_ok(bytes(self._buf[:n])):
                frame = bytes(self._buf[:n])
                del self._buf[:n]
                self._frame(frame)
            else:  # noise or another slave's response: hunt for the next frame start
                del self._buf[0]

    def _silence(self) -> None:
        """The line went quiet: what is buffered is one frame (unknown function) or garbage."""
        data, self._buf = bytes(self._buf), bytearray()
        if mb.rtu_crc_ok(data):
            self._frame(data)
        elif data:
            self.bad_input.warning(f"Modbus RTU {self.port}: {len(data)} byte(s) that are no frame discarded")

    def _frame(self, frame: bytes) -> None:
        address, request = frame[0], frame[1:-2]
        if address == 0:
            if mb.is_write(request):
                self.serve(request)  # broadcast: applied, never answered
            return
        if address != self.device_id:
            return  # another slave's request
        response = self.serve(request)
        try:
            os.write(self._fd(), mb.rtu_frame(address, response))
        except OSError as err:
            self._lost(err.strerror or str(err))
