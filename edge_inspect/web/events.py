"""The live event stream (/api/events, server-sent events): station events fanned out to HMIs."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..http.i18n import translate
from ..logbook import review
from ..station.events import InspectionDone, Stopped
from .context import web_context


def sse(event: dict) -> str:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event, default=str)}\n\n"


def localise(event: dict, lang: str) -> dict:
    """Check reasons, errors and alarm messages of an event (or status) in the client's language."""
    if lang == "en":
        return event
    out = dict(event)
    if "checks" in out:
        out["checks"] = [{**c, "reason": translate(c.get("reason", ""), lang)} for c in out["checks"]]
    for key in ("error", "message"):
        if isinstance(out.get(key), str):
            out[key] = translate(out[key], lang)
    if "alarms" in out:
        out["alarms"] = [{**a, "message": translate(a.get("message", ""), lang)} for a in out["alarms"]]
    return out


async def api_events(request: Request) -> Response:
    ctx = web_context(request)
    broadcaster = ctx.broadcaster
    await ctx.require_view(request)
    lang = ctx.lang(request)
    queue = broadcaster.subscribe()

    async def stream():
        try:
            yield sse(localise({"type": "status", **ctx.station.status()}, lang))
            while not broadcaster.closed:
                try:
                    event = await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:  # not the builtin one on Python 3.10
                    event = {"type": "status", **ctx.station.status()}
                if event.get("type") == InspectionDone.type:
                    shift = await ctx.query(review.shift_counters, ctx.config.web.shift_starts, tz=ctx.tz)
                    event = {**event, "shift": shift}
                yield sse(localise(event, lang))
                if event.get("type") == Stopped.type or await request.is_disconnected():
                    break
        finally:
            broadcaster.unsubscribe(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def routes() -> list[Route]:
    return [Route("/api/events", api_events)]
