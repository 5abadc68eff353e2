"""`edge-inspect fleet serve`: every station at a glance and a cross-station review on the central
PostgreSQL database (docs/fleet.md). The station's look (its CSS and login page) and roles: any of
operator, qa and integrator may view; with --open-view nobody needs to log in. Dispositions stay on
the stations, which own their logs; this page reads.
"""

from __future__ import annotations

import csv
import io
import queue
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from jinja2 import ChoiceLoader, FileSystemLoader
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..config import WebUser
from ..http.auth import LoginLimiter, User, basic_credentials, check_login
from ..http.i18n import LABELS, pick_language
from ..http.sessions import SessionStore
from ..timefmt import display, station_zone, zone_label, zone_name
from .images import ImageStore, open_store

HERE = Path(__file__).parent
WEB = HERE.parent / "web"
PER_PAGE = 50
VERDICTS = ("PASS", "FAIL", "ERROR")


class FilterError(ValueError):
    pass


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


@dataclass
class Filters:
    station: str | None = None
    verdict: str | None = None
    recipe: int | None = None
    check: str | None = None
    part_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    page: int = 1

    @classmethod
    def from_query(cls, q, tz) -> Filters:
        f = cls(station=q.get("station") or None, check=q.get("check") or None, part_id=q.get("part_id") or None)
        verdict = q.get("verdict") or None
        if verdict is not None and verdict not in VERDICTS:
            raise FilterError(f"verdict: {verdict!r} is not one of PASS, FAIL, ERROR")
        f.verdict = verdict
        for name, attr in (("from", "start"), ("to", "end")):
            value = q.get(name)
            if value:
                try:
                    moment = datetime.fromisoformat(value)
                except ValueError:
                    raise FilterError(f"{name}: {value!r} is not an ISO date/time") from None
                setattr(f, attr, moment if moment.tzinfo else moment.replace(tzinfo=tz))
        for name in ("recipe", "page"):
            value = q.get(name)
            if value:
                if not value.isdigit() or not 1 <= int(value) <= 10**6:
                    raise FilterError(f"{name}: {value!r} is not a whole number in 1..1000000")
                setattr(f, name, int(value))
        return f

    def where(self) -> tuple[str, list]:
        sql, args = ["true"], []
        for column, value in (("i.station_key", self.station), ("i.verdict", self.verdict), ("i.recipe", self.recipe)):
            if value is not None:
                sql.append(f"{column} = %s")
                args.append(value)
        if self.part_id:
            sql.append("i.part_id ILIKE %s")
            escaped = self.part_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{escaped}%")
        if self.start:
            sql.append("i.ts >= %s")
            args.append(self.start)
        if self.end:
            sql.append("i.ts < %s")
            args.append(self.end)
        if self.check:
            sql.append("EXISTS (SELECT 1 FROM checks c WHERE c.msg_id = i.msg_id AND c.name = %s AND c.status <> 'pass')")
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
            [midnight]).fetchall()
        alarms = conn.execute(
            "SELECT * FROM (SELECT DISTINCT ON (station_key, code) station_key, code, event, message, at "
            "FROM alarm_events WHERE event IN ('raised', 'cleared') ORDER BY station_key, code, at DESC) a "
            "WHERE event = 'raised' ORDER BY at").fetchall()
    for row in rows:
        listed = (row["status"] or {}).get("alarms")
        if isinstance(listed, list):  # the station's own alarm board, as of its latest status: the truth
            row["alarms"] = [{"code": a.get("code"), "message": a.get("message"), "at": _since(a.get("since"))}
                             for a in listed if isinstance(a, dict) and a.get("active")]
        else:  # no status with a list yet: the latest event per code
            row["alarms"] = [a for a in alarms if a["station_key"] == row["station_key"]]
        row["yield_today"] = row["passed_today"] / row["total_today"] if row["total_today"] else None
    return rows


def _since(unix) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if isinstance(unix, int | float) else None


def page(pool: Pool, f: Filters) -> tuple[list[dict], bool]:
    where, args = f.where()
    with pool.conn() as conn:
        rows = conn.execute(
            f"SELECT i.msg_id, i.station_key, i.inspection_id, i.result_id, i.ts, i.recipe, i.recipe_name, i.part_id, "
            f"i.verdict, i.defect_count, i.overlay_sha256 FROM inspections i WHERE {where} "
            f"ORDER BY i.ts DESC, i.ingest_seq DESC LIMIT %s OFFSET %s",
            [*args, PER_PAGE + 1, (f.page - 1) * PER_PAGE]).fetchall()
    return rows[:PER_PAGE], len(rows) > PER_PAGE


def detail(pool: Pool, msg_id: str) -> dict | None:
    with pool.conn() as conn:
        row = conn.execute("SELECT * FROM inspections WHERE msg_id = %s", [msg_id]).fetchone()
        if row is not None:
            row["checks"] = conn.execute("SELECT * FROM checks WHERE msg_id = %s ORDER BY idx", [msg_id]).fetchall()
    return row


def names(pool: Pool) -> tuple[list[str], list[str]]:
    with pool.conn() as conn:
        keys = [r["station_key"] for r in conn.execute("SELECT station_key FROM stations ORDER BY 1")]
        checks = [r["name"] for r in conn.execute(  # from the latest 5,000 inspections: bounded on any size
            "SELECT DISTINCT c.name FROM checks c JOIN (SELECT msg_id FROM inspections ORDER BY ts DESC LIMIT 5000) i "
            "USING (msg_id) WHERE c.status <> 'pass' ORDER BY 1 LIMIT 200")]
    return keys, checks


CSV_COLUMNS = ("station_key", "inspection_id", "result_id", "ts", "recipe", "recipe_name", "part_id", "trigger",
               "verdict", "error", "defect_count", "failed_checks", "model_sha256", "config_sha256", "image_sha256",
               "msg_id")


def csv_piece(pool: Pool, f: Filters, tz, after: tuple | None, size: int) -> tuple[str, tuple | None]:
    """Rows newest first by (ts, ingest_seq), keyset-paged: ``after`` is the last key of the previous piece."""
    where, args = f.where()
    if after is not None:
        where += " AND (i.ts, i.ingest_seq) < (%s, %s)"
        args = [*args, *after]
    with pool.conn() as conn:
        rows = conn.execute(f"SELECT i.*, i.ingest_seq AS k FROM inspections i WHERE {where} "
                            f"ORDER BY i.ts DESC, i.ingest_seq DESC LIMIT %s", [*args, size]).fetchall()
    out = io.StringIO()
    writer = csv.writer(out)
    if after is None:
        writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["ts"].astimezone(tz).isoformat(timespec="milliseconds") if c == "ts" else r[c]
                         for c in CSV_COLUMNS])
    return out.getvalue(), ((rows[-1]["ts"], rows[-1]["k"]) if len(rows) == size else None)


# -- the app --------------------------------------------------------------------------------------
def build_app(dsn: str, users: list[WebUser], open_view: bool = False, images: ImageStore | None = None,
              timezone: str | None = None, title: str = "fleet") -> Starlette:
    tz = station_zone(timezone)
    pool = Pool(dsn)
    by_name = {u.name: u for u in users}
    sessions, limiter = SessionStore(), LoginLimiter()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.loader = ChoiceLoader([FileSystemLoader(str(HERE / "templates")), FileSystemLoader(str(WEB / "templates"))])
    templates.env.filters["localtime"] = lambda value: display(value.timestamp(), tz) if value else ""
    templates.env.globals.update(zone_label=zone_label(tz), zone_name=zone_name(tz))

    def user_of(request: Request) -> User | None:
        session = sessions.get(request.session.get("sid"))
        return session.user if session is not None and session.user.name in by_name else None

    async def basic_user(request: Request) -> User | None:
        """HTTP Basic (scripts: curl -u), as on the station: failed attempts count against the client's
        address in the same limiter as the login form (429 with Retry-After when over the limit)."""
        credentials = basic_credentials(request.headers.get("authorization", ""))
        if credentials is None:
            return None
        name, password = credentials
        client = request.client.host if request.client else "?"
        wait = limiter.retry_after(client)
        if wait:
            raise Unauthorized(429, wait)
        u = by_name.get(name)
        if not await run_in_threadpool(check_login, password, u.password_hash if u else None):
            limiter.failed(client)
            return None
        return User(u.name, u.role)

    async def require_view(request: Request) -> User | None:
        user = user_of(request)
        if user is None and not open_view:
            user = await basic_user(request)
            if user is None:
                raise Unauthorized()
        return user

    def render(request: Request, name: str, **context) -> Response:
        lang = pick_language(None, request.headers.get("accept-language"), request.query_params.get("lang"),
                             request.cookies.get("lang"))
        session = sessions.get(request.session.get("sid"))
        return templates.TemplateResponse(request, name, {
            "t": LABELS[lang], "lang": lang, "user": session.user if session else None, "tr": lambda s: s,
            "csrf": session.csrf if session else "", "station": title, **context})

    async def home(request: Request) -> Response:
        await require_view(request)
        rows = await run_in_threadpool(stations, pool, tz)
        return render(request, "stations.html", rows=rows, now=time.time())

    async def api_stations(request: Request) -> Response:
        await require_view(request)
        rows = await run_in_threadpool(stations, pool, tz)
        return JSONResponse([{**{k: v for k, v in r.items() if k not in ("status", "alarms")},
                              "last_seen": r["last_seen"].isoformat() if r["last_seen"] else None,
                              "status_at": r["status_at"].isoformat() if r["status_at"] else None,
                              "alarms": [{"code": a["code"], "message": a["message"],
                                          "since": a["at"].isoformat() if a["at"] else None}
                                         for a in r["alarms"]]} for r in rows])

    async def review(request: Request) -> Response:
        await require_view(request)
        f = Filters.from_query(request.query_params, tz)
        rows, more = await run_in_threadpool(page, pool, f)
        keys, checks = await run_in_threadpool(names, pool)
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "page"])
        return render(request, "fleet_review.html", rows=rows, more=more, f=f, q=request.query_params, query=query,
                      keys=keys, checks=checks)

    async def one(request: Request) -> Response:
        await require_view(request)
        try:
            msg_id = str(__import__("uuid").UUID(request.path_params["msg_id"]))
        except ValueError:
            return PlainTextResponse("no such inspection", 404)
        row = await run_in_threadpool(detail, pool, msg_id)
        if row is None:
            return PlainTextResponse("no such inspection", 404)
        return render(request, "fleet_detail.html", row=row)

    async def export(request: Request) -> Response:
        await require_view(request)
        f = Filters.from_query(request.query_params, tz)

        async def stream():
            after, size = None, 200
            while True:
                text, after = await run_in_threadpool(csv_piece, pool, f, tz, after, size)
                yield text
                if after is None:
                    return
                size = 2000

        return StreamingResponse(stream(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="fleet-inspections.csv"'})

    async def image(request: Request) -> Response:
        await require_view(request)
        data = await run_in_threadpool(images.get, request.path_params["sha"]) if images else None
        if data is None:
            return JSONResponse({"error": "not found"}, 404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=31536000, immutable"})

    async def login_page(request: Request) -> Response:
        return render(request, "login.html", error=None, next=request.query_params.get("next", "/"))

    async def login(request: Request) -> Response:
        form = dict(await request.form())
        client = request.client.host if request.client else "?"
        nxt = str(form.get("next", "/"))
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        wait = limiter.retry_after(client)
        if wait:
            response = render(request, "login.html", error="too many attempts; wait a minute", next=nxt)
            response.status_code, response.headers["Retry-After"] = 429, str(wait)
            return response
        u = by_name.get(str(form.get("user", "")))
        ok = await run_in_threadpool(check_login, str(form.get("password", "")), u.password_hash if u else None)
        if not ok:
            limiter.failed(client)
            response = render(request, "login.html", error="wrong user or password", next=nxt)
            response.status_code = 401
            return response
        limiter.succeeded(client)
        sessions.revoke(request.session.get("sid"))
        sid, _ = sessions.create(User(u.name, u.role))
        request.session.clear()
        request.session["sid"] = sid
        return RedirectResponse(nxt, 303)

    async def logout(request: Request) -> Response:
        sessions.revoke(request.session.get("sid"))
        request.session.clear()
        return RedirectResponse("/", 303)

    async def unauthorized(request: Request, exc: Unauthorized) -> Response:
        if exc.status == 429:
            return JSONResponse({"error": "too many failed logins; try again later"}, 429,
                                headers={"Retry-After": str(exc.retry_after)})
        if request.method == "GET" and not request.url.path.startswith(("/api", "/images")) \
                and "authorization" not in request.headers:  # fmt: skip
            return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", 303)
        return JSONResponse({"error": "log in to view (session or HTTP Basic)"}, 401)

    async def bad_filter(request: Request, exc: FilterError) -> Response:
        return JSONResponse({"error": str(exc)}, 400)

    routes = [Route("/", home), Route("/api/stations", api_stations), Route("/review", review),
              Route("/review/{msg_id}", one), Route("/api/inspections.csv", export), Route("/images/{sha}", image),
              Route("/login", login_page), Route("/login", login, methods=["POST"]),
              Route("/logout", logout, methods=["POST"]),
              Mount("/static", StaticFiles(directory=str(WEB / "static")), name="static")]
    return Starlette(routes=routes, exception_handlers={Unauthorized: unauthorized, FilterError: bad_filter},
                     middleware=[Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32),
                                            session_cookie="edge_inspect_fleet", same_site="strict",
                                            max_age=int(timedelta(hours=12).total_seconds()))])


def load_users(path: str | Path) -> list[WebUser]:
    import yaml
    from pydantic import TypeAdapter, ValidationError

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"--users {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"--users {path}: not YAML: {err}") from None
    where: tuple = ()
    if isinstance(data, dict):  # {users: [...]}, or a whole station.yaml: its web.users
        if "users" in data:
            data, where = data["users"], ("users",)
        elif isinstance(data.get("web"), dict) and "users" in data["web"]:
            data, where = data["web"]["users"], ("web", "users")
    if not isinstance(data, list):
        raise ValueError(f"--users {path}: expected a list of users, a mapping with users: [...], or a station.yaml "
                         "with web.users (each user: name, role, password_hash)")
    try:
        return TypeAdapter(list[WebUser]).validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in (*where, *first["loc"])) or "(top)"
        raise ValueError(f"--users {path}: {key}: {first['msg']}") from None


def run_server(args) -> int:
    import uvicorn

    users = load_users(args.users) if args.users else []
    if not users and not args.open_view:
        raise ValueError("give --users (who may log in) or --open-view")
    try:
        with psycopg.connect(args.db, connect_timeout=10) as conn:
            from .pg_schema import version

            if version(conn) == 0:
                raise ValueError("--db: no fleet tables yet; start `edge-inspect fleet collect` on it first")
    except psycopg.Error as err:
        raise ValueError(f"--db: {' '.join(str(err).split())}") from None
    app = build_app(args.db, users, args.open_view, open_store(args.images) if args.images else None,
                    args.timezone, args.title)
    print(f"fleet review on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
