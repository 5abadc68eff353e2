"""Client mode: the PLC is the Modbus server; the appliance polls its inputs and writes its outputs
into the PLC's memory (pymodbus 3.16 client, TCP or RTU).

Integrity rules (docs/plc.md, "Client mode"):
* one request at a time (a lock), contiguous signals of one table in one request;
* when ``results_valid`` rises, every other output is written first and read back; only when the
  read-back matches is ``results_valid`` written. When it falls, it is written first;
* all outputs are rewritten every ``refresh_s``; new results are never written under a
  ``results_valid`` the PLC may still hold high (it is dropped first);
* a PLC restart — the connection re-established after a loss, or the PLC's memory found not to
  hold what we wrote there (read back before each refresh and before ``results_valid`` rises) —
  is reported by ``take_restart()``, and nothing is written until the station has taken it and
  reset the handshake: a restarted PLC must never get back a result it did not ask for;
* any failure (refused, timeout, exception response) drops the connection and raises LinkError;
  the next call reconnects with exponential backoff, at most ``RECONNECT_MAX_S`` apart.
"""

from __future__ import annotations

import asyncio
import os
import time

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .codec import TextFormat, decode, encode
from .handshake import Inputs
from .settings import LinkError, LinkSettings, StartError, input_names, inputs_from
from .signals import BIT_TABLES, Signal, SignalMap

# What belongs to one result: never changed under a results_valid the PLC sees high.
RESULT_CORE = ("result_id", "verdict", "defect_count", "failed_checks", "cycle_ms", "pass", "fail")
# What is read back before results_valid rises.
RESULT_SIGNALS = RESULT_CORE + ("error_code", "error", "inspection_count")
# Reconnection attempts at most this far apart, so a PLC back from a restart sees `online` and
# `ready` again within 2 s (docs/plc.md); a connection attempt every second costs a PLC nothing.
RECONNECT_MAX_S = 1.0


def runs(signals: list[Signal]) -> list[list[Signal]]:
    """Signals grouped into runs of one table with contiguous addresses (one request each)."""
    out: list[list[Signal]] = []
    for s in sorted(signals, key=lambda s: (s.table, s.address)):
        if out and out[-1][-1].table == s.table and out[-1][-1].end == s.address:
            out[-1].append(s)
        else:
            out.append([s])
    return out


class ClientLink:
    def __init__(self, signal_map: SignalMap, settings: LinkSettings):
        self.map, self.settings = signal_map, settings
        self.text = TextFormat(settings.part_id_encoding, settings.part_id_byte_order)
        self.client = self._make_client()
        self._last: dict[str, object] = {}
        self._lock = asyncio.Lock()
        self._backoff = settings.reconnect_min_s
        self._next_attempt = 0.0
        self._next_refresh = 0.0
        self.status, self.detail = "starting", ""
        self._connected_before = False
        self._restart = ""  # why the PLC's memory is no longer what we wrote, until the station takes it
        # trigger (a coil) is read before trigger_id (a register): a rising edge carries the id the
        # PLC wrote before raising it (handshake.py copes with the reverse tear)
        self._input_runs = runs([signal_map[n] for n in input_names(signal_map)])

    def _make_client(self):
        s = self.settings
        if s.transport == "tcp":  # reconnect_delay=0: we reconnect ourselves, with backoff
            return AsyncModbusTcpClient(s.host, port=s.port, timeout=s.timeout_s, retries=0, reconnect_delay=0)
        return AsyncModbusSerialClient(
            s.serial_port, baudrate=s.baudrate, parity=s.parity, timeout=s.timeout_s, retries=0, reconnect_delay=0
        )

    def where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port}" if s.transport == "tcp" else s.serial_port

    # -- connection --------------------------------------------------------------------------------
    async def start(self) -> None:
        """First connection attempt. An unreachable PLC is not fatal (we keep retrying); a serial
        device that does not exist is a configuration mistake and is."""
        if self.settings.transport == "rtu" and not os.path.exists(self.settings.serial_port):
            raise StartError(f"serial port {self.settings.serial_port}: no such device")
        try:
            await self._ensure_connected()
        except LinkError:
            pass

    async def stop(self, hold_s: float = 0.0) -> None:
        async with self._lock:
            self.client.close()

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        now = time.monotonic()
        if now < self._next_attempt:
            raise LinkError(self.detail or f"PLC {self.where()}: not connected")
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, self.settings.reconnect_max_s, RECONNECT_MAX_S)
        self.client.close()
        self.client = self._make_client()
        reason = ""
        try:
            ok = await self.client.connect()
        except (ModbusException, OSError) as err:
            ok, reason = False, f": {err}"
        if not ok:
            self.status, self.detail = "lost", f"PLC {self.where()}: cannot connect{reason}"
            raise LinkError(self.detail)
        self._backoff = self.settings.reconnect_min_s
        self._last.clear()  # whatever the PLC held before may be gone: rewrite everything
        if self._connected_before:  # the PLC may have restarted: we cannot tell it from a pulled cable
            self._restart = "connection lost and re-established"
        self._connected_before = True
        self.status, self.detail = "ok", ""

    def take_restart(self) -> str:
        """Why the PLC is to be treated as restarted ("" = it is not); the caller resets the handshake
        before it writes again. Until then ``write_outputs`` writes nothing."""
        reason, self._restart = self._restart, ""
        return reason

    async def _memory_reset(self) -> bool:
        """Read back what we wrote into the PLC; True (and a restart to take) when it is not there
        any more: the PLC restarted, or its program cleared our area, with the connection kept."""
        written = [self.map[n] for n in self._last if n in self._map_names()]
        seen: dict[str, object] = {}
        for run in runs(written):
            seen.update(await self._read_run(run))
        wrong = [s.name for s in written if seen[s.name] != self._last[s.name]]
        if not wrong:
            return False
        self._restart = f"memory found reset ({', '.join(wrong[:4])}{' …' if len(wrong) > 4 else ''} not as written)"
        self._last.clear()
        return True

    def _fail(self, message: str) -> LinkError:
        self.status, self.detail = "lost", message
        self._last.clear()
        self.client.close()
        return LinkError(message)

    async def _call(self, method, *args, what: str, **kwargs):
        try:  # the method itself raises ConnectionException when the socket is gone: call it inside
            response = await method(*args, device_id=self.settings.device_id, **kwargs)
        except (TimeoutError, asyncio.TimeoutError, ModbusException, OSError) as err:
            raise self._fail(f"PLC {self.where()}: {what}: {err}") from None
        if response.isError():
            raise self._fail(f"PLC {self.where()}: {what}: exception response {response}")
        return response

    async def _read_run(self, run: list[Signal]) -> dict[str, bool | int | str]:
        first, table = run[0], run[0].table
        count = run[-1].end - first.address
        reader = {
            "coil": self.client.read_coils,
            "discrete_input": self.client.read_discrete_inputs,
            "holding_register": self.client.read_holding_registers,
            "input_register": self.client.read_input_registers,
        }[table]
        r = await self._call(reader, first.address, count=count, what=f"read {table} {first.address}+{count}")
        raw = r.bits if table in BIT_TABLES else r.registers
        if len(raw) < count:
            raise self._fail(f"PLC {self.where()}: short answer reading {table} {first.address}+{count}")
        return {s.name: decode(s, raw[s.address - first.address : s.end - first.address], self.text) for s in run}

    async def _write_run(self, run: list[Signal], outputs: dict[str, object]) -> None:
        raw: list = []
        for s in run:
            raw += encode(s, outputs[s.name], self.text)
        first = run[0]
        if first.table == "coil":
            await self._call(
                self.client.write_coils, first.address, raw, what=f"write coils {first.address}+{len(raw)}"
            )
        elif first.table == "holding_register":
            await self._call(
                self.client.write_registers,
                first.address,
                raw,
                what=f"write holding registers {first.address}+{len(raw)}",
            )
        else:
            raise LinkError(f"signal {first.name} is in {first.table}, which a Modbus client cannot write")
        for s in run:
            self._last[s.name] = outputs[s.name]

    # -- the link interface ------------------------------------------------------------------------
    def health(self) -> tuple[str, str]:
        return self.status, self.detail

    async def read_inputs(self) -> Inputs:
        async with self._lock:
            await self._ensure_connected()
            values: dict[str, bool | int | str] = {}
            for run in self._input_runs:
                values.update(await self._read_run(run))
            return inputs_from(values)

    async def write_outputs(self, outputs: dict[str, object]) -> None:
        """Write what changed (everything every ``refresh_s``), never letting the PLC see
        ``results_valid`` high over results that are not all in place:

        0. before a refresh and before a new result, what we wrote is read back: if the PLC's memory
           lost it, nothing is written (a restart for the station to take, see take_restart);
        1. ``results_valid`` goes low first when it falls, and also before new results are written
           while the PLC may still hold it high (or after a reconnect, when we cannot know);
        2. the other outputs, one request per contiguous run;
        3. then, if ``results_valid`` is to be high: read the results back, and only then raise it.
        """
        async with self._lock:
            await self._ensure_connected()
            if self._restart:  # the station resets the handshake first: these outputs may be stale
                return
            now = time.monotonic()
            force = now >= self._next_refresh
            mapped = self._map_names()
            missing = object()
            changed = {n for n in outputs if n in mapped and self._last.get(n, missing) != outputs[n]}
            names = [n for n in outputs if n in mapped and (force or n in changed)]
            if not names:
                return
            valid = bool(outputs.get("results_valid"))
            results_changed = any(n in changed for n in RESULT_CORE)
            new_result = valid and (results_changed or self._last.get("results_valid") is not True)
            if (force or new_result) and await self._memory_reset():
                return
            if force:
                self._next_refresh = now + self.settings.refresh_s
            drop_first = ("results_valid" in names and not valid) or (
                valid and results_changed and self._last.get("results_valid", True) is not False
            )
            if drop_first and "results_valid" in mapped:
                await self._write_run([self.map["results_valid"]], {**outputs, "results_valid": False})
            for run in runs([self.map[n] for n in names if n != "results_valid"]):
                await self._write_run(run, outputs)
            if valid and ("results_valid" in names or drop_first):
                await self._confirm(outputs)
                await self._write_run([self.map["results_valid"]], outputs)

    def _map_names(self) -> set[str]:
        return {s.name for s in self.map.signals}

    async def _confirm(self, outputs: dict[str, object]) -> None:
        """Read the result signals back; rewrite once on a mismatch; fail if it persists."""
        check = [self.map[n] for n in RESULT_SIGNALS if n in outputs]
        for attempt in range(2):
            seen: dict[str, object] = {}
            for run in runs(check):
                seen.update(await self._read_run(run))
            wrong = [s for s in check if seen[s.name] != outputs[s.name]]
            if not wrong:
                return
            if attempt == 0:
                for run in runs(wrong):
                    await self._write_run(run, outputs)
        raise self._fail(f"PLC {self.where()}: results read back differ ({', '.join(s.name for s in wrong)})")
