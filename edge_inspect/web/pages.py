"""Server-rendered pages: the operator HMI (/), QA review (/review, detail, dispositions), login."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..http.accounts import login_form, login_token
from ..http.accounts import logout as logout_response
from ..http.auth import allowed
from ..http.filters import page_number
from ..http.i18n import translate
from ..logbook import alarm_history, review
from .context import web_context
from .events import localise


def hmi_result(row: dict | None, live_overlay: bool) -> dict | None:
    """The log row of the newest inspection in the shape of its live event (station/events.py
    InspectionDone), so that the HMI draws a reload as it drew the event: verdict, reason, the row's
    recipe and cycle, its checks. The picture: the station's live overlay while it holds this row's
    (``live_overlay``), else the overlay kept in the log, else none (the reason is shown)."""
    if row is None:
        return None
    image = None if live_overlay or not row["overlay_path"] else f"/api/inspections/{row['id']}/overlay"
    checks = [{"name": c["name"], "kind": c["kind"], "status": c["status"], "reason": c["reason"] or ""}
              for c in row["checks"]]  # fmt: skip
    cycle = row["cycle_ms"]
    return {
        "id": row["id"], "result_id": row["result_id"], "verdict": row["verdict"], "recipe": row["recipe"],
        "part_id": row["part_id"] or "", "error": row["error"] or "", "checks": checks,
        "frame": live_overlay or image is not None, "image": image,
        "timings_ms": {"cycle_ms": cycle} if cycle is not None else {},  # as kept: the live event's value
    }  # fmt: skip


async def hmi(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    row = await ctx.query(review.latest_inspection)
    has_frame = row is not None and row["id"] == ctx.station.last_row_id and ctx.station.last_overlay_jpeg is not None
    latest = hmi_result(row, has_frame)
    shift = await ctx.query(review.shift_counters, ctx.config.web.shift_starts, tz=ctx.tz)
    user = ctx.session_user(request)
    return ctx.page(
        request,
        "hmi.html",
        status=ctx.station.status(),
        latest=localise(latest, ctx.lang(request)) if latest else None,
        shift=shift,
        can_trigger=allowed(user, "trigger"),
    )


async def review_list(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    f = review.Filters.from_query(request.query_params, ctx.tz)
    rows, total, total_exact = await ctx.query(review.list_page, f)
    charts = await ctx.query(review.charts, f, ctx.tz)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "page"])
    checks = sorted({c.name for r in ctx.config.recipes for c in r.checks})
    return ctx.page(
        request,
        "review.html",
        rows=rows,
        total=total,
        total_exact=total_exact,
        f=f,
        query=query,
        q=request.query_params,
        charts=charts,
        checks=checks,
        recipes=[(r.number, r.name) for r in ctx.config.recipes],
    )


async def review_detail(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    row = await ctx.query(review.get_inspection, request.path_params["id"])
    if row is None:
        return PlainTextResponse("no such inspection", 404)
    f = review.Filters.from_query(request.query_params, ctx.tz)  # the list this one was opened from
    older, newer = await ctx.query(review.neighbours, f, row["id"])
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "page"])
    return ctx.page(
        request, "detail.html", row=row, dispositions=review.DISPOSITIONS, query=query, newer=newer, older=older
    )


async def alarm_list(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    page_no = page_number(request.query_params)
    rows, more = await ctx.query(alarm_history.history, page_no)
    lang = ctx.lang(request)
    for row in rows:
        row["message"] = translate(row["message"] or "", lang)
    return ctx.page(request, "alarms.html", rows=rows, more=more, page_no=page_no)


async def audit_list(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.require_view(request)
    action = request.query_params.get("action") or None
    if action is not None and action not in review.AUDIT_ACTIONS:
        raise review.FilterError(f"action: {action!r} is not one of {', '.join(review.AUDIT_ACTIONS)}")
    page_no = page_number(request.query_params)
    rows, more = await ctx.query(review.audit_page, action, page_no)
    return ctx.page(
        request, "audit.html", rows=rows, more=more, action=action, page_no=page_no, actions=review.AUDIT_ACTIONS
    )


async def form_disposition(request: Request) -> Response:
    ctx = web_context(request)
    form = dict(await request.form())
    user = await ctx.require(request, "disposition", form)
    inspection_id = request.path_params["id"]
    if await ctx.query(review.get_inspection, inspection_id) is None:
        return PlainTextResponse("no such inspection", 404)
    await ctx.query(
        review.set_disposition, inspection_id, form.get("disposition", ""), user.name, form.get("comment", "")
    )
    query = str(form.get("query", ""))
    target = inspection_id
    if form.get("advance"):  # keyboard review: on to the next one in the list
        f = review.Filters.from_query(dict(parse_qsl(query)), ctx.tz)
        older, _ = await ctx.query(review.neighbours, f, inspection_id)
        target = older or inspection_id
    return RedirectResponse(f"/review/{target}" + (f"?{query}" if query else ""), 303)


async def form_ack(request: Request) -> Response:
    ctx = web_context(request)
    form = dict(await request.form())
    user = await ctx.require(request, "ack_alarm", form)
    if ctx.station.acknowledge_alarm(request.path_params["code"], user.name):
        await ctx.query(review.audit, user.name, "ack_alarm", {"code": request.path_params["code"]})
    return RedirectResponse("/", 303)


async def login_page(request: Request) -> Response:
    ctx = web_context(request)
    next_path = request.query_params.get("next", "/")
    return ctx.page(request, "login.html", error=None, next=next_path, login_token=login_token(request))


async def login(request: Request) -> Response:
    ctx = web_context(request)
    return await login_form(
        request,
        ctx.accounts,
        lambda req, error, nxt: ctx.page(req, "login.html", error=error, next=nxt, login_token=login_token(req)),
    )


async def logout(request: Request) -> Response:
    ctx = web_context(request)
    return await logout_response(request, ctx.accounts)


def routes() -> list[Route]:
    return [
        Route("/", hmi),
        Route("/review", review_list),
        Route("/review/{id:int}", review_detail),
        Route("/audit", audit_list),
        Route("/alarms", alarm_list),
        Route("/review/{id:int}/disposition", form_disposition, methods=["POST"]),
        Route("/alarms/{code}/ack", form_ack, methods=["POST"]),
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
