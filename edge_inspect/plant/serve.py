"""`edge-inspect fleet serve`: every station at a glance and a cross-station review on the central
PostgreSQL database (docs/fleet.md). The station's look (its CSS and login page) and roles: any of
operator, qa and integrator may view; with --open-view nobody needs to log in. Dispositions stay on
the stations, which own their logs; this page reads.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import psycopg
from jinja2 import ChoiceLoader, FileSystemLoader
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..config import WebUser
from ..errors import UserError
from ..http.accounts import Accounts, LoginRefused, client_address, login_form, login_token
from ..http.accounts import logout as logout_response
from ..http.auth import User
from ..http.filters import FilterError, common_filters
from ..http.handlers import Handler, handles
from ..http.i18n import LABELS, pick_language
from ..http.middleware import BodyLimit, SecurityHeaders, client_gone
from ..http.spreadsheet import csv_text
from ..timefmt import display, station_zone, zone_label, zone_name
from .images import ImageStore, open_store

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
WEB = HERE.parent / "web"
PER_PAGE = 50


class Unauthorized(Exception):
    def __init__(self, status: int = 401, retry_after: int = 0):
        super().__init__(status)
        self.status, self.retry_after = status, retry_after


class Pool:
    """A few autocommit connections shared by the request threads."""

    def __init__(self, dsn: str, size: int = 4):
        self.dsn, self.size = dsn, size
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    @contextmanager
    def conn(self):
        try:
            conn = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self.size
                self._made += make
            if make:
                try:
                    conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)
                except BaseException:
                    with self._lock:
                        self._made -= 1
                    raise
            else:
                conn = self._free.get(timeout=30)
        try:
            yield conn
        except psycopg.OperationalError:
            conn.close()
            with self._lock:
                self._made -= 1
            raise
        except BaseException:
            self._free.put(conn)
            raise
        else:
            self._free.put(conn)


@dataclass(frozen=True)
class Filters:
    """The station review's filters (http/filters.py: the same rules) and the station."""

    station: str | None = None
    since: float | None = None
    until: float | None = None
    verdict: str | None = None
    recipe: int | None = None
    check: str | None = None
    part_id: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_query(cls, q, tz) -> Filters:
        station = q.get("station")
        return cls(
            station=station.strip() if isinstance(station, str) and station.strip() else None,
            **{**common_filters(q, tz), "per_page": PER_PAGE},
        )

    def where(self) -> tuple[str, list]:
        sql: list[str] = ["true"]
        args: list[object] = []
        for column, value in (("i.station_key", self.station), ("i.verdict", self.verdict), ("i.recipe", self.recipe)):
            if value is not None:
                sql.append(f"{column} = %s")
                args.append(value)
        if self.part_id:
            sql.append("i.part_id ILIKE %s")
            escaped = self.part_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{escaped}%")
        if self.since is not None:
            sql.append("i.ts >= %s")
            args.append(datetime.fromtimestamp(self.since, timezone.utc))
        if self.until is not None:
            sql.append("i.ts < %s")
            args.append(datetime.fromtimestamp(self.until, timezone.utc))
        if self.check:
            sql.append(
                "EXISTS (SELECT 1 FROM checks c WHERE c.msg_id = i.msg_id AND c.name = %s AND c.status <> 'pass')"
            )
            args.append(self.check)
        return " AND ".join(sql), args


# -- queries (worker threads) ---------------------------------------------------------------------
def stations(pool: Pool, tz) -> list[dict]:
    midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    with pool.conn() as conn:
        rows = conn.execute(
            "SELECT s.*, coalesce(y.total, 0) AS total_today, coalesce(y.passed, 0) AS passed_today FROM stations s "
            "LEFT JOIN (SELECT station_key, count(*) AS total, count(*) FILTER (WHERE verdict = 'PASS') AS passed "
            "FROM inspections WHERE ts >= %s GROUP BY station_key) y USING (station_key) ORDER BY s.station_key",
            [midnight],
        ).fetchall()
        alarms = conn.execute(
            "SELECT * FROM (SELECT DISTINCT ON (station_key, code) station_key, code, event, message, at "
            "FROM alarm_events WHERE event IN ('raised', 'cleared') ORDER BY station_key, code, at DESC) a "
            "WHERE event = 'raised' ORDER BY at"
        ).fetchall()
    for row in rows:
        listed = (row["status"] or {}).get("alarms")
        if isinstance(listed, list):  # the station's own alarm board, as of its latest status: the truth
            row["alarms"] = [
                {"code": a.get("code"), "message": a.get("message"), "at": _since(a.get("since"))}
                for a in listed
                if isinstance(a, dict) and a.get("active")
            ]
        else:  # no status with a list yet: the latest event per code
            row["alarms"] = [a for a in alarms if a["station_key"] == row["station_key"]]
        row["yield_today"] = row["passed_today"] / row["total_today"] if row["total_today"] else None
    return rows


def _since(unix) -> datetime | None:
    return datetime.fromtimestamp(unix, timezone.utc) if isinstance(unix, int | float) else None


def page(pool: Pool, f: Filters) -> tuple[list[dict], bool]:
    where, args = f.where()
    with pool.conn() as conn:
        rows = conn.execute(
            f"SELECT i.msg_id, i.station_key, i.inspection_id, i.result_id, i.ts, i.recipe, i.recipe_name, i.part_id, "
            f"i.verdict, i.defect_count, i.overlay_sha256 FROM inspections i WHERE {where} "
            f"ORDER BY i.ts DESC, i.ingest_seq DESC LIMIT %s OFFSET %s",
            [*args, PER_PAGE + 1, (f.page - 1) * PER_PAGE],
        ).fetchall()
    return rows[:PER_PAGE], len(rows) > PER_PAGE


def detail(pool: Pool, msg_id: str) -> dict | None:
    with pool.conn() as conn:
        row = conn.execute("SELECT * FROM inspections WHERE msg_id = %s", [msg_id]).fetchone()
        if row is not None:
            row["checks"] = conn.execute("SELECT * FROM checks WHERE msg_id = %s ORDER BY idx", [msg_id]).fetchall()
    return row


def dead_letters(pool: Pool, latest: int = 10) -> dict:
    """How many messages the collector kept as dead letters, and the latest few (without their bytes)."""
    with pool.conn() as conn:
        count = conn.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"]
        rows = conn.execute(
            "SELECT id, received_at, topic, station_key, reason, size FROM dead_letters ORDER BY id DESC LIMIT %s",
            [latest],
        ).fetchall()
    return {"count": count, "latest": rows}


def names(pool: Pool) -> tuple[list[str], list[str]]:
    with pool.conn() as conn:
        keys = [r["station_key"] for r in conn.execute("SELECT station_key FROM stations ORDER BY 1")]
        checks = [
            r["name"]
            for r in conn.execute(  # from the latest 5,000 inspections: bounded on any size
                "SELECT DISTINCT c.name FROM checks c JOIN (SELECT msg_id FROM inspections ORDER BY ts DESC LIMIT 5000) i "
                "USING (msg_id) WHERE c.status <> 'pass' ORDER BY 1 LIMIT 200"
            )
        ]
    return keys, checks


CSV_COLUMNS = (
    "station_key",
    "inspection_id",
    "result_id",
    "ts",
    "recipe",
    "recipe_name",
    "part_id",
    "trigger",
    "verdict",
    "error",
    "defect_count",
    "failed_checks",
    "model_sha256",
    "config_sha256",
    "image_sha256",
    "msg_id",
)


def csv_piece(pool: Pool, f: Filters, tz, after: tuple | None, size: int) -> tuple[str, tuple | None]:
    """Rows newest first by (ts, ingest_seq), keyset-paged: ``after`` is the last key of the previous piece."""
    where, args = f.where()
    if after is not None:
        where += " AND (i.ts, i.ingest_seq) < (%s, %s)"
        args = [*args, *after]
    with pool.conn() as conn:
        rows = conn.execute(
            f"SELECT i.*, i.ingest_seq AS k FROM inspections i WHERE {where} "
            f"ORDER BY i.ts DESC, i.ingest_seq DESC LIMIT %s",
            [*args, size],
        ).fetchall()
    lines: list[Sequence[object]] = [CSV_COLUMNS] if after is None else []
    lines += [
        [r["ts"].astimezone(tz).isoformat(timespec="milliseconds") if c == "ts" else r[c] for c in CSV_COLUMNS]
        for r in rows
    ]
    return csv_text(lines), ((rows[-1]["ts"], rows[-1]["k"]) if len(rows) == size else None)


# -- the app --------------------------------------------------------------------------------------
@dataclass
class PlantContext:
    """What the plant web's endpoints share, stored on the app as ``state.ctx`` (plant_context): the
    database, who may log in, the templates, the image store and the page's time zone."""

    pool: Pool
    accounts: Accounts
    templates: Jinja2Templates
    tz: tzinfo
    open_view: bool = False
    images: ImageStore | None = None
    title: str = "fleet"

    def user_of(self, request: Request) -> User | None:
        session = self.accounts.session(request.session.get("sid"))
        return session.user if session is not None else None

    async def require_view(self, request: Request) -> User | None:
        """A session, or HTTP Basic (scripts: curl -u) under the same login limits as the form."""
        user = self.user_of(request)
        if user is None and not self.open_view:
            try:
                user = await self.accounts.basic_user(request.headers.get("authorization", ""), client_address(request))
            except LoginRefused as err:
                raise Unauthorized(429, err.retry_after) from None
            if user is None:
                raise Unauthorized()
        return user

    def render(self, request: Request, name: str, **context) -> Response:
        lang = pick_language(
            None, request.headers.get("accept-language"), request.query_params.get("lang"), request.cookies.get("lang")
        )
        session = self.accounts.session(request.session.get("sid"))
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "t": LABELS[lang],
                "lang": lang,
                "user": session.user if session else None,
                "tr": lambda s: s,
                "csrf": session.csrf if session else "",
                "station": self.title,
                **context,
            },
        )


def plant_context(request: Request) -> PlantContext:
    """The plant web's shared state, which build_app stores on the app."""
    return cast(PlantContext, request.app.state.ctx)


async def home(request: Request) -> Response:
    ctx = plant_context(request)
    await ctx.require_view(request)
    rows = await run_in_threadpool(stations, ctx.pool, ctx.tz)
    dead = await run_in_threadpool(dead_letters, ctx.pool)
    return ctx.render(request, "stations.html", rows=rows, now=time.time(), dead=dead)


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
                "alarms": [
                    {"code": a["code"], "message": a["message"], "since": a["at"].isoformat() if a["at"] else None}
                    for a in r["alarms"]
                ],
            }
            for r in rows
        ]
    )


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
        Route("/", home),
        Route("/api/stations", api_stations),
        Route("/api/dead-letters", api_dead_letters),
        Route("/metrics", metrics),
        Route("/review", review),
        Route("/review/{msg_id}", one),
        Route("/api/inspections.csv", export),
        Route("/images/{sha}", image),
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(WEB / "static")), name="static"),
    ]


def templates_for(tz: tzinfo) -> Jinja2Templates:
    """The plant's templates, then the station web's (its login page and layout), in the page's zone."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.loader = ChoiceLoader(
        [FileSystemLoader(str(HERE / "templates")), FileSystemLoader(str(WEB / "templates"))]
    )
    templates.env.filters["localtime"] = lambda value: display(value.timestamp(), tz) if value else ""
    templates.env.globals.update(zone_label=zone_label(tz), zone_name=zone_name(tz))
    return templates


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


def load_users(path: str | Path) -> list[WebUser]:
    import yaml
    from pydantic import TypeAdapter, ValidationError

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise UserError(f"--users {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"--users {path}: not YAML: {err}") from None
    where: tuple = ()
    if isinstance(data, dict):  # {users: [...]}, or a whole station.yaml: its web.users
        if "users" in data:
            data, where = data["users"], ("users",)
        elif isinstance(data.get("web"), dict) and "users" in data["web"]:
            data, where = data["web"]["users"], ("web", "users")
    if not isinstance(data, list):
        raise UserError(
            f"--users {path}: expected a list of users, a mapping with users: [...], or a station.yaml "
            "with web.users (each user: name, role, password_hash)"
        )
    try:
        return TypeAdapter(list[WebUser]).validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in (*where, *first["loc"])) or "(top)"
        raise UserError(f"--users {path}: {key}: {first['msg']}") from None


class UsersFile:
    """The users file of ``fleet serve``, read again when it changes on disk: a user removed there, or
    given another role or password, loses their sessions at the next request. A file that no longer
    reads keeps the users it had (logged, once per change)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._users = {u.name: u for u in load_users(self.path)}
        self._signature = self._stat()

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def __call__(self) -> dict[str, WebUser]:
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                self._users = {u.name: u for u in load_users(self.path)}
            except UserError as err:
                log.warning("fleet serve: %s; keeping the users read before", err)
        return self._users


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
