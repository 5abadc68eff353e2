"""The plant web's answers for scripts: the stations and the dead letters as JSON, the dead letters
for Prometheus, the review's rows as CSV (streamed), and the stored images."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .context import plant_context
from .queries import Filters, csv_piece, dead_letters, model_shown, stations


async def api_dead_letters(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    dead = await run_in_threadpool(dead_letters, ctx.pool, 100)
    return JSONResponse(
        {
            "count": dead["count"],
            "latest": [{**r, "received_at": r["received_at"].isoformat()} for r in dead["latest"]],
        }
    )


async def metrics(request: Request) -> Response:
    """Prometheus text: the dead letters (alert on any increase)."""
    ctx = plant_context(request)
    await ctx.require_view(request)
    dead = await run_in_threadpool(dead_letters, ctx.pool, 0)
    return PlainTextResponse(
        "# HELP edge_inspect_fleet_dead_letters Messages the collector could not store.\n"
        "# TYPE edge_inspect_fleet_dead_letters gauge\n"
        f"edge_inspect_fleet_dead_letters {dead['count']}\n",
        media_type="text/plain; version=0.0.4",
    )


async def api_stations(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    rows = await run_in_threadpool(stations, ctx.pool, ctx.tz)
    return JSONResponse(
        [
            {
                **{k: v for k, v in r.items() if k not in ("status", "alarms")},
                "last_seen": r["last_seen"].isoformat() if r["last_seen"] else None,
                "status_at": r["status_at"].isoformat() if r["status_at"] else None,
                "model": model_shown(r.get("status")),
                "alarms": [
                    {"code": a["code"], "message": a["message"], "since": a["at"].isoformat() if a["at"] else None}
                    for a in r["alarms"]
                ],
            }
            for r in rows
        ]
    )


async def export(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    f = Filters.from_query(request.query_params, ctx.tz)

    async def stream():
        after, size = None, 200
        while True:
            text, after = await run_in_threadpool(csv_piece, ctx.pool, f, ctx.tz, after, size)
            yield text
            if after is None:
                return
            size = 2000

    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="fleet-inspections.csv"'},
    )


async def image(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    data = await run_in_threadpool(ctx.images.get, request.path_params["sha"]) if ctx.images else None
    if data is None:
        return JSONResponse({"error": "not found"}, 404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=31536000, immutable"})


def routes() -> list[Route]:
    return [
        Route("/api/stations", api_stations),
        Route("/api/dead-letters", api_dead_letters),
        Route("/metrics", metrics),
        Route("/api/inspections.csv", export),
        Route("/images/{sha}", image),
    ]
