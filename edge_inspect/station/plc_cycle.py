"""The station's PLC cycle: the poll loop, serving a trigger, writing the handshake's outputs, link health.

It runs on the station's event loop and never blocks it: the inspection itself runs in the station's
worker thread (``PlcHost.inspect``). It owns the PLC's side of the station's state (the handshake,
the link, the recipe switch, the link's status and the inputs as last read) and sees the station
through the narrow ``PlcHost`` Protocol (station/ports.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from ..camera.calibration import Undistorter
from ..inspection.checks import defect_count, failed_mask
from ..logbook import InspectionRecord
from ..plc.handshake import Handshake, Inputs, Request, Result, State
from ..plc.modbus import Link, LinkError
from ..plc.recipe import RecipeSwitch
from ..verdict import ErrorCode, Verdict
from .ports import PlcHost

log = logging.getLogger(__name__)


class PlcCycle:
    """The PLC link and handshake of one station (``link`` None: no PLC, the handshake still keeps `ready`)."""

    def __init__(
        self,
        host: PlcHost,
        handshake: Handshake,
        link: Link | None,
        recipe_switch: RecipeSwitch | None,
        undistort: Undistorter | None,
        first_view: str = "",
    ):
        self.host, self.handshake, self.link = host, handshake, link
        self.recipe_switch, self.undistort = recipe_switch, undistort
        self.first_view = first_view  # the camera whose calibration the positions are in
        self.status = "off" if link is None else "starting"
        self.last_inputs: Inputs | None = None  # the PLC's inputs as last read (the setup pages' I/O monitor)

    def defect_positions_mm(self, rec: InspectionRecord) -> tuple[tuple[float, float], ...]:
        """The first defect points (in check order) in mm, for plc.options.defect_positions: of the
        checks on the first camera (the calibrated working plane; another view's points are not in it)."""
        n = self.host.config.plc.options.defect_positions
        if not n or self.undistort is None:
            return ()
        mine = ("", self.first_view)
        points = [p for o in rec.outcomes if o.kind == "point" and o.view in mine for p in o.points]
        return tuple(self.undistort.to_mm(x, y) for x, y in points[:n])

    async def serve(self, request: Request) -> None:
        try:
            rec, code = await self.host.inspect(request.recipe, request.part_id, "plc", request.trigger_id, request.at)
            result = Result(
                result_id=request.trigger_id,
                verdict=rec.verdict,
                defect_count=defect_count(rec.outcomes),
                failed_checks=failed_mask(rec.outcomes),
                error_code=code,
                warning=any(o.reason.startswith("uncertain") for o in rec.outcomes),
                positions_mm=self.defect_positions_mm(rec),
            )
        except Exception as err:  # a bug must not leave the PLC waiting on `busy` forever
            log.exception("inspection for PLC trigger %d failed", request.trigger_id)
            self.host.raise_alarm("internal", f"inspection failed: {type(err).__name__}: {err}")
            result = Result(result_id=request.trigger_id, verdict=Verdict.ERROR, error_code=ErrorCode.INTERNAL)
        if not self.handshake.complete(result, time.monotonic(), request):
            log.warning("result for PLC trigger %d logged, not presented: the PLC restarted since", request.trigger_id)
            self.host.result_out(request.trigger_id)  # logged: the shadow may judge it all the same
            return
        if self.handshake.last_cycle_clean:
            self.host.clear_alarm("missed_trigger")
        await self.write_outputs()
        self.host.result_out(request.trigger_id)  # after `results_valid`: the shadow may have the frame

    def _take_restart(self) -> bool:
        """A PLC restart the link found (client mode): what it asked for before is void, so reset the
        handshake before anything is written to it. True when there was one."""
        if self.link is None:
            return False
        restart = self.link.take_restart()
        if restart:
            log.warning("PLC restarted (%s): handshake reset, result area cleared", restart)
            self.handshake.restart()
        return bool(restart)

    async def write_outputs(self) -> None:
        """The handshake's outputs to the PLC (nothing without a link; a lost link reconnects by itself)."""
        if self.link is None:
            return
        try:
            self._take_restart()
            await self.link.write_outputs(dict(self.handshake.outputs))
            if self._take_restart():  # found while writing: nothing was written
                self.check_health()
                await self.link.write_outputs(dict(self.handshake.outputs))
        except LinkError:
            self.check_health()  # the link reports it lost; it reconnects with backoff

    def check_health(self) -> None:
        """Link health → status, alarms (plc_lost / plc_absent) and `online` (running and connected)."""
        if self.link is None:
            return
        status, detail = self.link.health()
        if status == self.status:
            return
        self.status = status
        for code in ("plc_lost", "plc_absent"):
            if code == f"plc_{status}":
                self.host.raise_alarm(code, detail)
            else:
                self.host.clear_alarm(code)
        self.handshake.set_online(status != "lost" and not self.host.stopping)

    async def run(self) -> None:
        """Poll the PLC every plc.poll_ms until the station stops; a trigger is served as a task of the station's."""
        assert self.link is not None, "run() needs a PLC link"
        while not self.host.stopping:
            period = self.host.config.plc.poll_ms / 1000
            try:
                inputs = self.last_inputs = await self.link.read_inputs()
                self._take_restart()  # before its new memory's inputs meet the old handshake
                self.check_health()  # online again before the first write
                if self.recipe_switch is not None:
                    self.recipe_switch.update(inputs, busy=self.handshake.state == State.BUSY)
                    self.handshake.outputs.update(self.recipe_switch.outputs())
                missed = self.handshake.missed_triggers
                request = self.handshake.update(inputs, time.monotonic())
                if request is not None and self.recipe_switch is not None:
                    request = replace(request, recipe=self.recipe_switch.active)
                if self.handshake.missed_triggers != missed:  # on the status only, never on a result
                    self.host.counters["missed_triggers"] = self.handshake.missed_triggers
                    self.host.raise_alarm(
                        "missed_trigger",
                        f"trigger not accepted: {self.handshake.last_refusal} ({self.handshake.missed_triggers} so far)",
                    )
                await self.write_outputs()
                if request is not None:
                    self.host.spawn_inspection(self.serve(request))
            except LinkError:
                pass  # reported by link.health(); the link reconnects (client) or reopens (serial) by itself
            except Exception as err:  # keep polling: the PLC must keep seeing heartbeat and state
                log.exception("PLC loop")
                self.host.raise_alarm("internal", f"PLC loop: {type(err).__name__}: {err}")
                await asyncio.sleep(1.0)
            self.check_health()
            await asyncio.sleep(period)
