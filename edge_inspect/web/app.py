"""Assembles the station's web app: pages, API, event stream and metrics on one Starlette app,
served by uvicorn on the station's event loop. Request handlers run log queries and password
checks in worker threads (WebContext.query), so the loop keeps serving the PLC."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..config import StationConfig
from ..log import review
from . import api, events, metrics, pages
from .context import HERE, Unauthorized, WebContext

if TYPE_CHECKING:
    from ..station import Station

log = logging.getLogger(__name__)


def _secret_key(config: StationConfig, data_dir: Path) -> str:
    if config.web.secret_key:
        return config.web.secret_key
    path = data_dir / "web_secret"
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


async def _unauthorized(request: Request, exc: Unauthorized) -> Response:
    page = request.url.path == "/" or request.url.path.startswith("/review")
    if not page or request.method != "GET":
        return JSONResponse({"error": exc.message}, exc.status)
    return RedirectResponse(f"/login?next={request.url.path}", 303)


async def _bad_filter(request: Request, exc: review.FilterError) -> Response:
    return JSONResponse({"error": str(exc)}, 400)


def build_app(station: Station, config: StationConfig) -> Starlette:
    """The web app for ``station``; subscribes its event stream and metrics to the station's events."""
    ctx = WebContext(station, config)
    broadcaster = events.Broadcaster(asyncio.get_running_loop())
    hist = metrics.CycleHistogram()
    station.events.subscribe(hist.on_event)
    station.events.subscribe(broadcaster.on_event)
    routes = [*pages.routes(ctx), *api.routes(ctx), *events.routes(ctx, broadcaster), *metrics.routes(ctx, hist),
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SessionMiddleware, secret_key=_secret_key(config, station.store.folder),
                               session_cookie="edge_inspect", same_site="strict", max_age=12 * 3600)],
        exception_handlers={Unauthorized: _unauthorized, review.FilterError: _bad_filter},
    )


async def serve(station: Station, config: StationConfig) -> asyncio.Task:
    """Start the web server on the running loop; returns its task (set ``task.server.should_exit``)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(build_app(station, config), host=config.web.host, port=config.web.port,
                                           log_level="warning", lifespan="off", access_log=False,
                                           timeout_graceful_shutdown=3))
    task = asyncio.create_task(server.serve(), name="web")
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # raises why it did not start (port taken)
    task.server = server  # type: ignore[attr-defined]
    return task
