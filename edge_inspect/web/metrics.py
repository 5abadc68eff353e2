"""Prometheus text exposition at /metrics: inspections by verdict, cycle-time histogram, link gauges,
memory by holder."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..station.allocator import memory_figures
from .context import web_context
from .feeds import CYCLE_BUCKETS_MS


def _label(value) -> str:
    """A Prometheus label value: backslash, quote and newline escaped; None as ""."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def platform_lines(platform: dict) -> list[str]:
    """An info metric (value 1, the labels carry it): what the model runs on, so that a fleet's
    dashboards show which stations fell back to the CPU."""
    jetson = platform.get("jetson") or {}
    labels = {
        "python": platform.get("python"), "machine": platform.get("machine"),
        "onnxruntime": platform.get("onnxruntime"), "backend": platform.get("backend"),
        "tensorrt": platform.get("tensorrt"), "gpu": platform.get("gpu"),
        "compute_capability": platform.get("compute_capability"), "l4t": jetson.get("l4t"),
        "jetpack": jetson.get("jetpack"), "power_mode": jetson.get("power_mode"),
    }  # fmt: skip
    text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    return [
        "# HELP edge_inspect_platform_info What the model runs on: runtime, providers, GPU, JetPack (value 1).",
        "# TYPE edge_inspect_platform_info gauge",
        f"edge_inspect_platform_info{{{text}}} 1",
    ]


def memory_lines() -> list[str]:
    """Where the station's memory is (station/allocator.py), so a slow climb can be told apart:
    glibc blocks in use or kept free, SQLite's caches, Python's live blocks."""
    figures = memory_figures()
    lines = [
        "# HELP edge_inspect_memory_bytes Memory by holder: malloc_in_use, malloc_free (kept, not returned), sqlite.",
        "# TYPE edge_inspect_memory_bytes gauge",
    ]
    lines += [f'edge_inspect_memory_bytes{{kind="{k}"}} {v}' for k, v in figures.items() if k != "python_blocks"]
    lines += [
        "# HELP edge_inspect_python_blocks Python's live memory blocks (sys.getallocatedblocks).",
        "# TYPE edge_inspect_python_blocks gauge",
        f"edge_inspect_python_blocks {figures['python_blocks']}",
    ]
    return lines


async def metrics(request: Request) -> Response:
    ctx = web_context(request)
    hist = ctx.cycles
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
        *camera_lines(status.get("camera_counters") or {}),
        "# TYPE edge_inspect_plc_up gauge",
        f"edge_inspect_plc_up {int(status['plc'] == 'ok')}",
        "# TYPE edge_inspect_missed_triggers_total counter",
        f"edge_inspect_missed_triggers_total {status['counters'].get('missed_triggers', 0)}",
        *platform_lines(status.get("platform") or {}),
        *memory_lines(),
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def camera_lines(counters: dict[str, int]) -> list[str]:
    """A GenICam camera's counts: frames received and arrived incomplete, stream packets missing and
    asked for again, times the camera was lost (docs/cameras.md)."""
    if not counters:
        return []
    return [
        "# HELP edge_inspect_camera_frames_total Frames received from the camera, by how they arrived.",
        "# TYPE edge_inspect_camera_frames_total counter",
        f'edge_inspect_camera_frames_total{{arrived="complete"}} {counters.get("frames", 0)}',
        f'edge_inspect_camera_frames_total{{arrived="incomplete"}} {counters.get("incomplete", 0)}',
        "# TYPE edge_inspect_camera_missing_packets_total counter",
        f"edge_inspect_camera_missing_packets_total {counters.get('missing_packets', 0)}",
        "# TYPE edge_inspect_camera_resend_requests_total counter",
        f"edge_inspect_camera_resend_requests_total {counters.get('resend_requests', 0)}",
        "# TYPE edge_inspect_camera_lost_total counter",
        f"edge_inspect_camera_lost_total {counters.get('lost', 0)}",
    ]


def routes() -> list[Route]:
    return [Route("/metrics", metrics)]
