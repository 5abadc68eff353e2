"""The station's PLC side: the poll loop, serving a trigger, writing the handshake's outputs, link health.

A part of ``Station`` (station.py) kept in its own module; it runs on the station's event loop and
never blocks it: the inspection itself runs in the station's worker thread (``Station.inspect``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from ..inspection.checks import defect_count, failed_mask
from ..logbook import InspectionRecord
from ..plc.handshake import Request, Result, State
from ..plc.modbus import LinkError
from ..verdict import ErrorCode, Verdict

log = logging.getLogger(__name__)


class PlcSide:
    """Methods of ``Station`` that talk to the PLC link; the attributes they use are set by Station."""

    def _defect_positions_mm(self, rec: InspectionRecord) -> tuple[tuple[float, float], ...]:
        """The first defect points (in check order) in mm, for plc.options.defect_positions."""
        n = self.config.plc.options.defect_positions
        if not n or self.undistort is None:
            return ()
        points = [p for o in rec.outcomes if o.kind == "point" for p in o.points]
        return tuple(self.undistort.to_mm(x, y) for x, y in points[:n])

    async def _serve(self, request: Request) -> None:
        try:
            rec, code = await self.inspect(request.recipe, request.part_id, "plc", request.trigger_id, request.at)
            result = Result(
                result_id=request.trigger_id,
                verdict=rec.verdict,
                defect_count=defect_count(rec.outcomes),
                failed_checks=failed_mask(rec.outcomes),
                error_code=code,
                warning=any(o.reason.startswith("uncertain") for o in rec.outcomes),
                positions_mm=self._defect_positions_mm(rec),
            )
        except Exception as err:  # a bug must not leave the PLC waiting on `busy` forever
            log.exception("inspection for PLC trigger %d failed", request.trigger_id)
            self.raise_alarm("internal", f"inspection failed: {type(err).__name__}: {err}")
            result = Result(result_id=request.trigger_id, verdict=Verdict.ERROR, error_code=ErrorCode.INTERNAL)
        if not self.handshake.complete(result, time.monotonic(), request):
            log.warning("result for PLC trigger %d logged, not presented: the PLC restarted since", request.trigger_id)
            return
        if self.handshake.last_cycle_clean:
            self.clear_alarm("missed_trigger")
        await self._write_outputs()

    def _take_plc_restart(self) -> bool:
        """A PLC restart the link found (client mode): what it asked for before is void, so reset the
        handshake before anything is written to it. True when there was one."""
        restart = self.link.take_restart()
        if restart:
            log.warning("PLC restarted (%s): handshake reset, result area cleared", restart)
            self.handshake.restart()
        return bool(restart)

    async def _write_outputs(self) -> None:
        if self.link is None:
            return
        try:
            self._take_plc_restart()
            await self.link.write_outputs(dict(self.handshake.outputs))
            if self._take_plc_restart():  # found while writing: nothing was written
                self._plc_health()
                await self.link.write_outputs(dict(self.handshake.outputs))
        except LinkError:
            self._plc_health()  # the link reports it lost; it reconnects with backoff

    def _plc_health(self) -> None:
        """Link health → status, alarms (plc_lost / plc_absent) and `online` (running and connected)."""
        status, detail = self.link.health()
        if status == self.plc_status:
            return
        self.plc_status = status
        for code in ("plc_lost", "plc_absent"):
            if code == f"plc_{status}":
                self.raise_alarm(code, detail)
            else:
                self.clear_alarm(code)
        self.handshake.set_online(status != "lost" and not self._stopping)

    async def _plc_loop(self) -> None:
        period = self.config.plc.poll_ms / 1000
        while not self._stopping:
            try:
                inputs = self.last_inputs = await self.link.read_inputs()
                self._take_plc_restart()  # before its new memory's inputs meet the old handshake
                self._plc_health()  # online again before the first write
                if self.recipe_switch is not None:
                    self.recipe_switch.update(inputs, busy=self.handshake.state == State.BUSY)
                    self.handshake.outputs.update(self.recipe_switch.outputs())
                missed = self.handshake.missed_triggers
                request = self.handshake.update(inputs, time.monotonic())
                if request is not None and self.recipe_switch is not None:
                    request = replace(request, recipe=self.recipe_switch.active)
                if self.handshake.missed_triggers != missed:  # on the status only, never on a result
                    self.counters["missed_triggers"] = self.handshake.missed_triggers
                    self.raise_alarm(
                        "missed_trigger",
                        f"trigger not accepted: {self.handshake.last_refusal} ({self.handshake.missed_triggers} so far)",
                    )
                await self._write_outputs()
                if request is not None:
                    self._spawn(self._serve(request), "serve")
            except LinkError:
                pass  # reported by link.health(); the link reconnects (client) or reopens (serial) by itself
            except Exception as err:  # keep polling: the PLC must keep seeing heartbeat and state
                log.exception("PLC loop")
                self.raise_alarm("internal", f"PLC loop: {type(err).__name__}: {err}")
                await asyncio.sleep(1.0)
            self._plc_health()
            await asyncio.sleep(period)
