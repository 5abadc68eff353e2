"""The plant web's pages: every station at a glance, the cross-station review and one inspection,
and the login form."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..http.accounts import login_form, login_token
from ..http.accounts import logout as logout_response
from .context import plant_context
from .queries import Filters, dead_letters, detail, model_shown, names, page, stations


async def home(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    rows = await run_in_threadpool(stations, ctx.pool, ctx.tz)
    dead = await run_in_threadpool(dead_letters, ctx.pool)
    return ctx.render(request, "stations.html", rows=rows, now=time.time(), dead=dead, model_shown=model_shown)


async def review(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    f = Filters.from_query(request.query_params, ctx.tz)
    rows, more = await run_in_threadpool(page, ctx.pool, f)
    keys, checks = await run_in_threadpool(names, ctx.pool)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "page"])
    return ctx.render(
        request,
        "fleet_review.html",
        rows=rows,
        more=more,
        f=f,
        q=request.query_params,
        query=query,
        keys=keys,
        checks=checks,
    )


async def one(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    try:
        msg_id = str(uuid.UUID(request.path_params["msg_id"]))
    except ValueError:
        return PlainTextResponse("no such inspection", 404)
    row = await run_in_threadpool(detail, ctx.pool, msg_id)
    if row is None:
        return PlainTextResponse("no such inspection", 404)
    return ctx.render(request, "fleet_detail.html", row=row)


async def login_page(request: Request) -> Response:
    next_path = request.query_params.get("next", "/")
    return plant_context(request).render(
        request, "login.html", error=None, next=next_path, login_token=login_token(request)
    )


async def login(request: Request) -> Response:
    ctx = plant_context(request)
    return await login_form(
        request,
        ctx.accounts,
        lambda req, error, nxt: ctx.render(req, "login.html", error=error, next=nxt, login_token=login_token(req)),
    )


async def logout(request: Request) -> Response:
    return await logout_response(request, plant_context(request).accounts)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/review", review),
        Route("/review/{msg_id}", one),
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
