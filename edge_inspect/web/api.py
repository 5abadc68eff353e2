"""The REST API under /api (docs/api.md) and the kept images."""

from __future__ import annotations

import csv
import hmac
import io
import json
from pathlib import Path
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..http.i18n import LABELS
from ..http.spreadsheet import csv_cell
from ..http.timefmt import iso_local
from ..logbook import corrections, review
from .bodies import CorrectionsBody, DispositionBody, parse
from .context import BadRequest, WebContext, web_context
from .events import localise


def image_file(folder: Path, relative: str | None) -> Path | None:
    """A file inside the data folder's images, or None: no escaping the folder."""
    if not relative:
        return None
    relative = unquote(relative)
    if relative.startswith(("/", "\\")) or ":" in relative or "\x00" in relative:
        return None
    root = (folder / "images").resolve()
    path = (folder / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def fleet_token_ok(ctx: WebContext, request: Request) -> bool:
    """The fleet collector's per-station token (``Authorization: Bearer``, fleet.image_token_env/_file):
    it reads the kept images and nothing else (docs/fleet.md)."""
    fleet = ctx.config.fleet
    header = request.headers.get("authorization", "")
    if fleet is None or not header.lower().startswith("bearer "):
        return False
    try:
        token = fleet.image_token()  # read on every request: a rotated token applies at once
    except (OSError, ValueError):
        return False
    return token is not None and bool(token) and hmac.compare_digest(header[7:].strip().encode(), token.encode())


async def json_object(request: Request) -> dict:
    """The request's JSON body, which must be an object; BadRequest (400, one line) otherwise."""
    raw = await request.body()  # bounded per endpoint by http.middleware.BodyLimit
    try:
        body = json.loads(raw) if len(raw) < 64 * 1024 else await run_in_threadpool(json.loads, raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def api_session(request: Request) -> Response:
    """Who is logged in, and the CSRF token their state-changing requests must send."""
    ctx = web_context(request)
    session = ctx.session(request)
    user = await ctx.user(request)
    csrf = session.csrf if session else ctx.basic_csrf(user.name) if user else None
    return JSONResponse({"user": user.name if user else None, "role": user.role if user else None, "csrf": csrf})


async def api_status(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    shift = await ctx.query(review.shift_counters, ctx.config.web.shift_starts, tz=ctx.tz)
    status = {**ctx.station.status(), "shift": shift}
    lang = request.query_params.get("lang")  # the HMI asks in its language; API clients get English
    return JSONResponse(localise(status, lang) if lang in LABELS else status)


async def api_list(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    f = review.Filters.from_query(request.query_params, ctx.tz)
    rows, total, exact = await ctx.query(review.list_page, f)
    return JSONResponse({"items": rows, "total": total, "total_exact": exact, "page": f.page, "per_page": f.per_page})


async def api_one(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    row = await ctx.query(review.get_inspection, request.path_params["id"])
    return JSONResponse(row) if row else JSONResponse({"error": "no such inspection"}, 404)


async def api_image(request: Request) -> Response:
    ctx = web_context(request)
    if not fleet_token_ok(ctx, request):
        await ctx.require_view(request)
    kind = request.path_params["kind"]
    if kind not in ("image", "overlay"):
        return JSONResponse({"error": f"unknown resource {kind!r}"}, 404)
    row = await ctx.query(review.get_inspection, request.path_params["id"])
    if row is None:
        return JSONResponse({"error": "no such inspection"}, 404)
    path = image_file(ctx.store.folder, row["image_path" if kind == "image" else "overlay_path"])
    return FileResponse(path, media_type="image/jpeg") if path else JSONResponse({"error": "no image kept"}, 404)


async def images(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    path = image_file(ctx.store.folder, "images/" + request.path_params["path"])
    return FileResponse(path, media_type="image/jpeg") if path else JSONResponse({"error": "not found"}, 404)


async def api_csv(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    pieces = review.csv_chunks(ctx.store, review.Filters.from_query(request.query_params, ctx.tz), ctx.tz)

    async def stream():  # chunk by chunk in a worker thread: first bytes at once, memory flat
        for piece in pieces:
            yield await run_in_threadpool(piece)

    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="inspections.csv"'},
    )


async def api_charts(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    return JSONResponse(await ctx.query(review.charts, review.Filters.from_query(request.query_params, ctx.tz), ctx.tz))


async def api_live_overlay(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    data = ctx.station.last_overlay_jpeg
    if data is None:
        return JSONResponse({"error": "no frame yet"}, 404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def api_trigger(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "trigger")
    body = await json_object(request) if request.headers.get("content-type", "").startswith("application/json") \
        else {}  # fmt: skip
    recipe, part_id = body.get("recipe", ctx.config.triggers.recipe), body.get("part_id", "")
    if type(recipe) is not int:  # a bool is an int to isinstance, and "1" is no number
        return JSONResponse({"error": f"recipe: {recipe!r} is not a whole number"}, 400)
    if ctx.config.recipe(recipe) is None:
        return JSONResponse({"error": f"recipe {recipe!r} is not configured"}, 400)
    if not isinstance(part_id, str) or len(part_id) > 20 or not part_id.isascii() or not part_id.isprintable():
        return JSONResponse(
            {"error": "part_id: at most 20 printable ASCII characters, as the PLC's registers hold"}, 400
        )
    rec, code = await ctx.station.inspect(recipe, part_id, trigger="software")
    await ctx.query(review.audit, user.name, "trigger", {"recipe": recipe, "result_id": rec.result_id})
    return JSONResponse(
        {
            "id": ctx.station.last_row_id,
            "result_id": rec.result_id,
            "verdict": rec.verdict.name,
            "error_code": int(code),
        }
    )


async def api_disposition(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "disposition")
    body = await json_object(request)
    inspection_id = request.path_params["id"]
    if await ctx.query(review.get_inspection, inspection_id) is None:
        return JSONResponse({"error": "no such inspection"}, 404)
    given = parse(DispositionBody, body)
    saved = await ctx.query(review.set_disposition, inspection_id, given.disposition, user.name, given.comment)
    return JSONResponse(saved)


async def api_corrections_post(request: Request) -> Response:
    """A reviewer's corrections of one check's points: {"check_idx": i, "add": [[x, y]…], "remove": […]}."""
    ctx = web_context(request)
    user = await ctx.require(request, "disposition")
    given = parse(CorrectionsBody, await json_object(request))
    inspection_id = request.path_params["id"]
    if await ctx.query(review.get_inspection, inspection_id) is None:
        return JSONResponse({"error": "no such inspection"}, 404)
    points = await ctx.query(corrections.add, inspection_id, given.check_idx, given.add, given.remove, user.name)
    return JSONResponse({"points": {str(k): v for k, v in points.items()}})


async def api_corrections_json(request: Request) -> Response:
    """Every corrected inspection as a training record (image, checks, model and corrected points)."""
    ctx = web_context(request)
    await ctx.require_view(request)
    return JSONResponse(await ctx.query(corrections.export))


async def api_corrections_csv(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    records = await ctx.query(corrections.export)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "result_id", "time", "part_id", "image_path", "check", "model_points", "corrected_points"])
    for r in records:
        for c in r["checks"]:
            writer.writerow(
                [
                    r["id"],
                    r["result_id"],
                    iso_local(r["ts"], ctx.tz),
                    csv_cell(r["part_id"]),
                    r["image_path"] or "",
                    csv_cell(c["name"]),
                    json.dumps(c["model_points"]),
                    json.dumps(c["corrected_points"]),
                ]
            )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="corrections.csv"'},
    )


async def api_ack(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "ack_alarm")
    code = request.path_params["code"]
    if not ctx.station.acknowledge_alarm(code, user.name):
        return JSONResponse({"error": "no such alarm"}, 404)
    await ctx.query(review.audit, user.name, "ack_alarm", {"code": code})
    return JSONResponse({"acknowledged": code})


def routes() -> list[Route]:
    return [
        Route("/api/session", api_session),
        Route("/api/status", api_status),
        Route("/api/inspections", api_list),
        Route("/api/inspections.csv", api_csv),
        Route("/api/inspections/{id:int}", api_one),
        Route("/api/inspections/{id:int}/{kind:str}", api_image),
        Route("/api/inspections/{id:int}/disposition", api_disposition, methods=["POST"]),
        Route("/api/inspections/{id:int}/corrections", api_corrections_post, methods=["POST"]),
        Route("/api/corrections.json", api_corrections_json),
        Route("/api/corrections.csv", api_corrections_csv),
        Route("/api/charts", api_charts),
        Route("/api/live/overlay.jpg", api_live_overlay),
        Route("/api/trigger", api_trigger, methods=["POST"]),
        Route("/api/alarms/{code}/ack", api_ack, methods=["POST"]),
        Route("/images/{path:path}", images),
    ]
