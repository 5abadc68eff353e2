"""Prometheus text exposition at /metrics: inspections by verdict, cycle-time histogram, link gauges."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..station.events import Event, InspectionDone
from .context import WebContext

CYCLE_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)


class CycleHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(CYCLE_BUCKETS_MS) + 1)
        self.total_ms = 0.0

    def on_event(self, event: Event) -> None:
        if isinstance(event, InspectionDone):
            self.observe(event.timings_ms.get("cycle_ms", 0.0))

    def observe(self, cycle_ms: float) -> None:
        self.total_ms += cycle_ms
        for i, bound in enumerate(CYCLE_BUCKETS_MS):
            if cycle_ms <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


def routes(ctx: WebContext, hist: CycleHistogram) -> list[Route]:
    async def metrics(request: Request) -> Response:
        await ctx.require_view(request)
        status = ctx.station.status()
        lines = [
            "# HELP edge_inspect_inspections_total Inspections since start, by verdict.",
            "# TYPE edge_inspect_inspections_total counter",
        ]
        lines += [
            f'edge_inspect_inspections_total{{verdict="{v}"}} {status["counters"].get(v, 0)}'
            for v in ("PASS", "FAIL", "ERROR")
        ]
        lines += [
            "# HELP edge_inspect_cycle_ms Trigger to result, milliseconds.",
            "# TYPE edge_inspect_cycle_ms histogram",
        ]
        cumulative = 0
        for bound, n in zip((*CYCLE_BUCKETS_MS, "+Inf"), hist.counts, strict=True):
            cumulative += n
            lines.append(f'edge_inspect_cycle_ms_bucket{{le="{bound}"}} {cumulative}')
        lines += [f"edge_inspect_cycle_ms_sum {hist.total_ms:.1f}", f"edge_inspect_cycle_ms_count {cumulative}"]
        lines += [
            "# TYPE edge_inspect_camera_up gauge",
            f"edge_inspect_camera_up {int(status['camera'] == 'ok')}",
            "# TYPE edge_inspect_plc_up gauge",
            f"edge_inspect_plc_up {int(status['plc'] == 'ok')}",
            "# TYPE edge_inspect_missed_triggers_total counter",
            f"edge_inspect_missed_triggers_total {status['counters'].get('missed_triggers', 0)}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return [Route("/metrics", metrics)]
