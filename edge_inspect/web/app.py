"""The station's web side: operator HMI (/), QA review (/review), REST API (/api), /metrics.

Served by the daemon itself on the station's event loop (Starlette on uvicorn). Pages are
rendered on the server; the HMI updates live from server-sent events (/api/events).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response,
                                 StreamingResponse)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..config import StationConfig
from . import review
from .auth import LoginLimiter, User, allowed, csrf_ok, new_csrf_token, verify_password
from .events import Broadcaster, sse
from .i18n import LABELS, pick_language

HERE = Path(__file__).parent
CYCLE_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)


class Unauthorized(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _secret_key(config: StationConfig, data_dir: Path) -> str:
    if config.web.secret_key:
        return config.web.secret_key
    path = data_dir / "web_secret"
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class WebApp:
    """Holds the station and builds the Starlette app around it."""

    def __init__(self, station, config: StationConfig):
        self.station, self.config = station, config
        self.store = station.store
        review.ensure_tables(self.store)
        self.users = {u.name: u for u in config.web.users}
        self.limiter = LoginLimiter()
        self.events = Broadcaster(asyncio.get_running_loop())
        self.cycle_hist = [0] * (len(CYCLE_BUCKETS_MS) + 1)
        self.cycle_sum = 0.0
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        previous = station.on_event

        def on_event(event: dict) -> None:
            previous(event)
            if event.get("type") == "inspection":
                self._observe(event.get("timings_ms", {}).get("cycle_ms", 0.0))
            self.events.publish(event)

        station.on_event = on_event
        self.app = Starlette(
            routes=self._routes(),
            middleware=[Middleware(SessionMiddleware, secret_key=_secret_key(config, self.store.folder),
                                   session_cookie="edge_inspect", same_site="strict", max_age=12 * 3600)],
            exception_handlers={Unauthorized: self._unauthorized, review.FilterError: self._bad_filter},
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _observe(self, cycle_ms: float) -> None:
        self.cycle_sum += cycle_ms
        for i, bound in enumerate(CYCLE_BUCKETS_MS):
            if cycle_ms <= bound:
                self.cycle_hist[i] += 1
                return
        self.cycle_hist[-1] += 1

    def user(self, request: Request) -> User | None:
        name = request.session.get("user")
        if name in self.users:
            return User(name, self.users[name].role)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            u = self.users.get(name)
            client = request.client.host if request.client else "?"
            if u and not self.limiter.blocked(client) and verify_password(password, u.password_hash):
                return User(u.name, u.role)
            self.limiter.failed(client)
        return None

    def require_view(self, request: Request) -> User | None:
        user = self.user(request)
        if not self.config.web.open_view and user is None:
            raise Unauthorized(401, "log in to view")
        return user

    async def require(self, request: Request, action: str, form: dict | None = None) -> User:
        user = self.user(request)
        if user is None:
            raise Unauthorized(401, "log in first")
        if not allowed(user, action):
            raise Unauthorized(403, f"role '{user.role}' may not {action.replace('_', ' ')}")
        if request.session.get("user"):  # cookie sessions need the CSRF token; Basic auth does not
            sent = request.headers.get("x-csrf-token") or (form or {}).get("csrf")
            if not csrf_ok(request.session.get("csrf"), sent):
                raise Unauthorized(403, "missing or wrong CSRF token")
        return user

    def lang(self, request: Request) -> str:
        return pick_language(self.config.station.language, request.headers.get("accept-language"),
                             request.query_params.get("lang"))

    def page(self, request: Request, name: str, **context) -> Response:
        if "csrf" not in request.session:
            request.session["csrf"] = new_csrf_token()
        lang = self.lang(request)
        return self.templates.TemplateResponse(request, name, {
            "t": LABELS[lang], "lang": lang, "user": self.user(request), "csrf": request.session["csrf"],
            "station": self.config.station.name, **context})

    async def _unauthorized(self, request: Request, exc: Unauthorized) -> Response:
        page = request.url.path == "/" or request.url.path.startswith("/review")
        if not page or request.method != "GET":
            return JSONResponse({"error": exc.message}, exc.status)
        return RedirectResponse(f"/login?next={request.url.path}", 303)

    async def _bad_filter(self, request: Request, exc: review.FilterError) -> Response:
        return JSONResponse({"error": str(exc)}, 400)

    def _image_file(self, relative: str | None) -> Path | None:
        """A file inside the data folder's images, or None: no escaping the folder."""
        if not relative:
            return None
        relative = unquote(relative)
        if relative.startswith(("/", "\\")) or ":" in relative:
            return None
        root = (self.store.folder / "images").resolve()
        path = (self.store.folder / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    # -- routes ------------------------------------------------------------------------------------
    def _routes(self) -> list:
        return [
            Route("/", self.hmi), Route("/review", self.review_list), Route("/review/{id:int}", self.review_detail),
            Route("/review/{id:int}/disposition", self.form_disposition, methods=["POST"]),
            Route("/alarms/{code}/ack", self.form_ack, methods=["POST"]),
            Route("/login", self.login_page), Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/status", self.api_status), Route("/api/events", self.api_events),
            Route("/api/inspections", self.api_list), Route("/api/inspections.csv", self.api_csv),
            Route("/api/inspections/{id:int}", self.api_one),
            Route("/api/inspections/{id:int}/{kind:str}", self.api_image),
            Route("/api/inspections/{id:int}/disposition", self.api_disposition, methods=["POST"]),
            Route("/api/charts", self.api_charts), Route("/api/live/overlay.jpg", self.api_live_overlay),
            Route("/api/trigger", self.api_trigger, methods=["POST"]),
            Route("/api/alarms/{code}/ack", self.api_ack, methods=["POST"]),
            Route("/api/session", self.api_session),
            Route("/images/{path:path}", self.images), Route("/metrics", self.metrics),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ]

    async def hmi(self, request: Request) -> Response:
        self.require_view(request)
        latest = review.list_inspections(self.store, review.Filters(per_page=1))[0]
        detail = review.get_inspection(self.store, latest[0]["id"]) if latest else None
        return self.page(request, "hmi.html", status=self.station.status(), latest=detail,
                         shift=review.shift_counters(self.store, self.config.web.shift_starts))

    async def review_list(self, request: Request) -> Response:
        self.require_view(request)
        f = review.Filters.from_query(request.query_params)
        rows, total = review.list_inspections(self.store, f)
        query = "&".join(f"{k}={v}" for k, v in request.query_params.items() if k != "page")
        checks = sorted({c.name for r in self.config.recipes for c in r.checks})
        return self.page(request, "review.html", rows=rows, total=total, f=f, query=query, q=request.query_params,
                         charts=review.charts(self.store, f), checks=checks,
                         recipes=[(r.number, r.name) for r in self.config.recipes])

    async def review_detail(self, request: Request) -> Response:
        self.require_view(request)
        row = review.get_inspection(self.store, request.path_params["id"])
        if row is None:
            return PlainTextResponse("no such inspection", 404)
        return self.page(request, "detail.html", row=row, dispositions=review.DISPOSITIONS)

    async def form_disposition(self, request: Request) -> Response:
        form = dict(await request.form())
        user = await self.require(request, "disposition", form)
        inspection_id = request.path_params["id"]
        if review.get_inspection(self.store, inspection_id) is None:
            return PlainTextResponse("no such inspection", 404)
        review.set_disposition(self.store, inspection_id, form.get("disposition", ""), user.name, form.get("comment", ""))
        return RedirectResponse(f"/review/{inspection_id}", 303)

    async def form_ack(self, request: Request) -> Response:
        form = dict(await request.form())
        user = await self.require(request, "ack_alarm", form)
        self._ack(request.path_params["code"], user)
        return RedirectResponse("/", 303)

    def _ack(self, code: str, user: User) -> bool:
        ok = self.station.acknowledge_alarm(code)
        if ok:
            review.audit(self.store, user.name, "ack_alarm", {"code": code})
        return ok

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html", error=None, next=request.query_params.get("next", "/"))

    async def login(self, request: Request) -> Response:
        form = dict(await request.form())
        client = request.client.host if request.client else "?"
        nxt = form.get("next", "/")
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        if self.limiter.blocked(client):
            return self.page(request, "login.html", error="too many attempts; wait a minute", next=nxt)
        u = self.users.get(form.get("user", ""))
        if u is None or not verify_password(form.get("password", ""), u.password_hash):
            self.limiter.failed(client)
            response = self.page(request, "login.html", error="wrong user or password", next=nxt)
            response.status_code = 401
            return response
        self.limiter.succeeded(client)
        request.session.clear()
        request.session.update({"user": u.name, "csrf": new_csrf_token()})
        return RedirectResponse(nxt, 303)

    async def logout(self, request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", 303)

    async def api_session(self, request: Request) -> Response:
        if "csrf" not in request.session:
            request.session["csrf"] = new_csrf_token()
        user = self.user(request)
        return JSONResponse({"user": user.name if user else None, "role": user.role if user else None,
                             "csrf": request.session["csrf"]})

    async def api_status(self, request: Request) -> Response:
        self.require_view(request)
        return JSONResponse({**self.station.status(),
                             "shift": review.shift_counters(self.store, self.config.web.shift_starts)})

    async def api_events(self, request: Request) -> Response:
        self.require_view(request)
        queue = self.events.subscribe()

        async def stream():
            try:
                yield sse({"type": "status", **self.station.status()})
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), 1.0)
                    except asyncio.TimeoutError:
                        event = {"type": "status", **self.station.status()}
                    if event.get("type") == "inspection":
                        event = {**event, "shift": review.shift_counters(self.store, self.config.web.shift_starts)}
                    yield sse(event)
                    if await request.is_disconnected():
                        break
            finally:
                self.events.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def api_list(self, request: Request) -> Response:
        self.require_view(request)
        f = review.Filters.from_query(request.query_params)
        rows, total = review.list_inspections(self.store, f)
        return JSONResponse({"items": rows, "total": total, "page": f.page, "per_page": f.per_page})

    async def api_one(self, request: Request) -> Response:
        self.require_view(request)
        row = review.get_inspection(self.store, request.path_params["id"])
        return JSONResponse(row) if row else JSONResponse({"error": "no such inspection"}, 404)

    async def api_image(self, request: Request) -> Response:
        self.require_view(request)
        kind = request.path_params["kind"]
        if kind not in ("image", "overlay"):
            return JSONResponse({"error": f"unknown resource {kind!r}"}, 404)
        row = review.get_inspection(self.store, request.path_params["id"])
        if row is None:
            return JSONResponse({"error": "no such inspection"}, 404)
        path = self._image_file(row["image_path" if kind == "image" else "overlay_path"])
        return FileResponse(path, media_type="image/jpeg") if path else JSONResponse({"error": "no image kept"}, 404)

    async def images(self, request: Request) -> Response:
        self.require_view(request)
        path = self._image_file("images/" + request.path_params["path"])
        return FileResponse(path, media_type="image/jpeg") if path else JSONResponse({"error": "not found"}, 404)

    async def api_csv(self, request: Request) -> Response:
        self.require_view(request)
        text = review.csv_export(self.store, review.Filters.from_query(request.query_params))
        return Response(text, media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="inspections.csv"'})

    async def api_charts(self, request: Request) -> Response:
        self.require_view(request)
        return JSONResponse(review.charts(self.store, review.Filters.from_query(request.query_params)))

    async def api_live_overlay(self, request: Request) -> Response:
        self.require_view(request)
        data = self.station.last_overlay_jpeg
        if data is None:
            return JSONResponse({"error": "no frame yet"}, 404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def api_trigger(self, request: Request) -> Response:
        body = await request.json() if request.headers.get("content-type", "").startswith("application/json") else {}
        user = await self.require(request, "trigger")
        recipe = body.get("recipe", self.config.triggers.recipe)
        if not isinstance(recipe, int) or self.config.recipe(recipe) is None:
            return JSONResponse({"error": f"recipe {recipe!r} is not configured"}, 400)
        rec, code = await self.station.inspect(recipe, str(body.get("part_id", ""))[:20], trigger="software")
        review.audit(self.store, user.name, "trigger", {"recipe": recipe, "result_id": rec.result_id})
        return JSONResponse({"id": self.station.last_row_id, "result_id": rec.result_id, "verdict": rec.verdict.name,
                             "error_code": int(code)})

    async def api_disposition(self, request: Request) -> Response:
        body = await request.json()
        user = await self.require(request, "disposition")
        inspection_id = request.path_params["id"]
        if review.get_inspection(self.store, inspection_id) is None:
            return JSONResponse({"error": "no such inspection"}, 404)
        saved = review.set_disposition(self.store, inspection_id, str(body.get("disposition", "")), user.name,
                                       str(body.get("comment", "")))
        return JSONResponse(saved)

    async def api_ack(self, request: Request) -> Response:
        user = await self.require(request, "ack_alarm")
        if not self._ack(request.path_params["code"], user):
            return JSONResponse({"error": "no such alarm"}, 404)
        return JSONResponse({"acknowledged": request.path_params["code"]})

    async def metrics(self, request: Request) -> Response:
        self.require_view(request)
        status = self.station.status()
        lines = ["# HELP edge_inspect_inspections_total Inspections since start, by verdict.",
                 "# TYPE edge_inspect_inspections_total counter"]
        lines += [f'edge_inspect_inspections_total{{verdict="{v}"}} {status["counters"].get(v, 0)}'
                  for v in ("PASS", "FAIL", "ERROR")]
        lines += ["# HELP edge_inspect_cycle_ms Trigger to result, milliseconds.", "# TYPE edge_inspect_cycle_ms histogram"]
        cumulative = 0
        for bound, n in zip((*CYCLE_BUCKETS_MS, "+Inf"), self.cycle_hist):
            cumulative += n
            lines.append(f'edge_inspect_cycle_ms_bucket{{le="{bound}"}} {cumulative}')
        lines += [f"edge_inspect_cycle_ms_sum {self.cycle_sum:.1f}", f"edge_inspect_cycle_ms_count {cumulative}"]
        lines += ["# TYPE edge_inspect_camera_up gauge", f"edge_inspect_camera_up {int(status['camera'] == 'ok')}",
                  "# TYPE edge_inspect_plc_up gauge", f"edge_inspect_plc_up {int(status['plc'] == 'ok')}",
                  "# TYPE edge_inspect_missed_triggers_total counter",
                  f"edge_inspect_missed_triggers_total {status['counters'].get('missed_triggers', 0)}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def serve(station, config: StationConfig) -> asyncio.Task:
    """Start the web server on the running loop; returns its task (cancel it to stop)."""
    import uvicorn

    web = WebApp(station, config)
    server = uvicorn.Server(uvicorn.Config(web.app, host=config.web.host, port=config.web.port, log_level="warning",
                                           lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(), name="web")
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # raises why it did not start (port taken)
    task.server = server  # type: ignore[attr-defined]
    return task
