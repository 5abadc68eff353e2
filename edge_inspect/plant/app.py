"""`edge-inspect fleet serve`: every station at a glance and a cross-station review on the central
PostgreSQL database (docs/fleet.md). The station's look (its CSS and login page) and roles: any of
operator, qa and integrator may view; with --open-view nobody needs to log in. Dispositions stay on
the stations, which own their logs; this page reads.

This module composes the plant web: the endpoints of pages.py and api.py, how what they raise is
answered, the middleware, the context; and runs it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..config import WebUser
from ..errors import UserError
from ..http.accounts import Accounts
from ..http.filters import FilterError
from ..http.handlers import Handler, handles
from ..http.middleware import BodyLimit, SecurityHeaders, client_gone
from ..http.timefmt import station_zone
from . import api, pages
from .context import WEB, PlantContext, Unauthorized, templates_for
from .images import ImageStore, open_store
from .queries import Pool
from .users import UsersFile


async def unauthorized(request: Request, exc: Unauthorized) -> Response:
    if exc.status == 429:
        return JSONResponse(
            {"error": "too many failed logins; try again later"}, 429, headers={"Retry-After": str(exc.retry_after)}
        )
    if request.method == "GET" and not request.url.path.startswith(("/api", "/images")) \
            and "authorization" not in request.headers:  # fmt: skip
        return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", 303)
    return JSONResponse({"error": "log in to view (session or HTTP Basic)"}, 401)


async def bad_filter(request: Request, exc: FilterError) -> Response:
    return JSONResponse({"error": str(exc)}, 400)


def exception_handlers() -> dict[Any, Handler]:
    """How the plant web answers what its endpoints raise (also for an endpoint tested alone)."""
    return dict(
        [
            handles(Unauthorized, unauthorized),
            handles(FilterError, bad_filter),
            handles(ClientDisconnect, client_gone),
        ]
    )


def routes() -> list[BaseRoute]:
    return [
        *pages.routes(),
        *api.routes(),
        Mount("/static", StaticFiles(directory=str(WEB / "static")), name="static"),
    ]


def build_app(
    dsn: str,
    users: list[WebUser] | Callable[[], dict[str, WebUser]],
    open_view: bool = False,
    images: ImageStore | None = None,
    timezone: str | None = None,
    title: str = "fleet",
) -> Starlette:
    """``users``: a list, or a function giving the users as they are now by name (UsersFile)."""
    tz = station_zone(timezone)
    if callable(users):
        accounts = Accounts(users)
    else:
        by_name = {u.name: u for u in users}
        accounts = Accounts(lambda: by_name)
    app = Starlette(
        routes=routes(),
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit),
            Middleware(
                SessionMiddleware,
                secret_key=secrets.token_urlsafe(32),
                session_cookie="edge_inspect_fleet",
                same_site="strict",
                max_age=int(timedelta(hours=12).total_seconds()),
            ),
        ],
    )
    app.state.ctx = PlantContext(Pool(dsn), accounts, templates_for(tz), tz, open_view, images, title)
    return app


def run_server(args) -> int:
    import uvicorn

    from ..http.server import server_config

    users: UsersFile | list[WebUser] = UsersFile(args.users) if args.users else []
    if not (isinstance(users, UsersFile) and users()) and not args.open_view:
        raise UserError("give --users (who may log in) or --open-view")
    try:
        with psycopg.connect(args.db, connect_timeout=10) as conn:
            from .pg_schema import version

            if version(conn) == 0:
                raise UserError("--db: no fleet tables yet; start `edge-inspect fleet collect` on it first")
    except psycopg.Error as err:
        raise UserError(f"--db: {' '.join(str(err).split())}") from None
    app = build_app(
        args.db, users, args.open_view, open_store(args.images) if args.images else None, args.timezone, args.title
    )
    print(f"fleet review on http://{args.host}:{args.port}/", flush=True)
    uvicorn.Server(server_config(app, trusted_proxies=args.trusted_proxy or [], host=args.host, port=args.port)).run()
    return 0
