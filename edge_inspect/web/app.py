"""Assembles the station's web app: pages, API, event stream and metrics on one Starlette app,
served by uvicorn on the station's event loop. Request handlers run log queries and password
checks in worker threads (WebContext.query), so the loop keeps serving the PLC."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..config import StationConfig
from ..errors import UserError
from ..http.auth import check_login
from ..http.handlers import Handler, handles
from ..http.middleware import BodyLimit, SecurityHeaders, client_gone
from ..http.server import server_config
from ..http.sessions import SessionStore
from ..logbook import review
from . import api, events, gate_page, metrics, models, pages, setup
from .context import HERE, BadRequest, Unauthorized, WebContext
from .feeds import Broadcaster

if TYPE_CHECKING:
    import uvicorn

    from .port import WebPort

log = logging.getLogger(__name__)


def _secret_key(config: StationConfig, data_dir: Path) -> str:
    if config.web.secret_key:
        return config.web.secret_key
    path = data_dir / "web_secret"
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class WebStartError(UserError, OSError):
    """The web server could not start (port in use, unknown host); one line for the user."""


async def _unauthorized(request: Request, exc: Unauthorized) -> Response:
    page = request.url.path == "/" or request.url.path.startswith(("/review", "/setup"))
    if exc.status == 401 and page and request.method == "GET":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return JSONResponse({"error": exc.message}, exc.status, headers=headers)


async def _bad_request(request: Request, exc: ValueError) -> Response:
    return JSONResponse({"error": str(exc)}, 400)


async def _keeper_refused(request: Request, exc: setup.KeeperRefused) -> Response:
    return JSONResponse(exc.body, exc.status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the traceback goes to the journal, the client gets no detail."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error; see the station's log"}, 500)


def exception_handlers() -> dict[Any, Handler]:
    """How the station web answers what its endpoints raise (also for an endpoint tested alone)."""
    return {
        **dict(
            [
                handles(Unauthorized, _unauthorized),
                handles(review.FilterError, _bad_request),
                handles(BadRequest, _bad_request),
                handles(setup.KeeperRefused, _keeper_refused),
                handles(ClientDisconnect, client_gone),
            ]
        ),
        500: _internal_error,
    }


def build_app(
    station: WebPort, config: StationConfig, password_check: Callable[[str, str | None], bool] = check_login
) -> Starlette:
    """The web app for ``station``; subscribes its event stream and metrics to the station's events.
    ``password_check(password, stored hash or None)``: how a login's password is checked (in a worker thread)."""
    web = config.web
    secret = _secret_key(config, station.store.folder)
    ctx = WebContext(
        station,
        secret_key=secret,
        sessions=SessionStore(web.session_idle_min * 60, web.session_max_h * 3600),
        broadcaster=Broadcaster(asyncio.get_running_loop()),
        password_check=password_check,
    )
    station.events.subscribe(ctx.cycles.on_event)
    station.events.subscribe(ctx.broadcaster.on_event)
    routes = [
        *pages.routes(),
        *api.routes(),
        *setup.routes(),
        *models.routes(),
        *gate_page.routes(),
        *events.routes(),
        *metrics.routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    tls = bool(web.tls_cert)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, tls=tls),
            Middleware(
                BodyLimit, limits={"/api/setup/try": setup.MAX_UPLOAD_BODY, "/api/setup/config": setup.MAX_CONFIG_BODY}
            ),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie="edge_inspect",
                same_site="strict",
                https_only=tls,
                max_age=int(web.session_max_h * 3600),
            ),
        ],
        exception_handlers=exception_handlers(),
    )
    app.state.ctx = ctx  # what every endpoint reaches the station through (context.web_context)
    return app


@dataclass
class WebServer:
    """The web server running on the station's loop: uvicorn's server and the task serving it."""

    server: uvicorn.Server
    task: asyncio.Task

    async def stop(self) -> None:
        """Open event streams have ended with the station's Stopped event; the server exits."""
        self.server.should_exit = True
        await self.task


async def serve(station: WebPort, config: StationConfig) -> WebServer:
    """Start the web server on the running loop.
    Raises WebStartError when it cannot listen."""
    import uvicorn

    web = config.web
    try:
        sock = socket.create_server((web.host, web.port), family=socket.AF_INET6 if ":" in web.host else socket.AF_INET)
    except OSError as err:
        raise WebStartError(f"web: cannot listen on {web.host}:{web.port}: {err.strerror or err}") from None
    # Accepted connections inherit this: without it a response on a kept-alive connection (every
    # browser's) waited ~40 ms for the client's delayed ACK (Nagle), /api/status 48 ms instead of ~2.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server = uvicorn.Server(
        server_config(
            build_app(station, config),
            trusted_proxies=web.trusted_proxies,
            lifespan="off",
            timeout_graceful_shutdown=3,
            ssl_certfile=web.tls_cert,
            ssl_keyfile=web.tls_key,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        sock.close()
        try:
            task.result()
        except BaseException as err:  # uvicorn exits (SystemExit) when e.g. the TLS files are bad
            raise WebStartError(f"web: cannot start: {err}") from None
        raise WebStartError("web: the server stopped at start-up")
    return WebServer(server, task)
