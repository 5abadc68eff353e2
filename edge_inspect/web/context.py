"""What every web module shares: the station, its config and log, users, sessions, templates, and
the request helpers for who is asking and what they may do."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..config import StationConfig, WebUser
from ..http.accounts import Accounts, LoginRefused, client_address
from ..http.auth import User, allowed, check_login, csrf_ok
from ..http.i18n import LABELS, pick_language, translate
from ..http.layout import page_templates
from ..http.sessions import Session, SessionStore
from ..http.timefmt import display, iso_local, station_zone, zone_label, zone_name
from ..logbook import Store
from .feeds import Broadcaster, CycleHistogram
from .gate_runs import GateRuns
from .setup_state import SetupState

if TYPE_CHECKING:
    from .port import WebPort

HERE = Path(__file__).parent


def audit_text(detail: str | None, t: dict[str, str]) -> str:
    """An audit row's JSON detail as a line a person reads, in the page's labels ``t``: 'False reject →
    Confirmed defect · “comment”', 'alarm: Camera lost', 'check: 2, points added: 1'."""
    try:
        data = json.loads(detail or "{}")
    except ValueError:
        return detail or ""

    def word(value: object) -> str:
        return t.get(value, value) if isinstance(value, str) else "—" if value is None else str(value)

    if isinstance(data, dict) and "after" in data:
        before, after = data.get("before") or {}, data.get("after") or {}
        text = f"{word(before.get('disposition'))} → {word(after.get('disposition', ''))}"
        if after.get("comment") != before.get("comment"):
            text += f" · “{after.get('comment', '')}”"
        return text
    if isinstance(data, dict):
        shown = {**data, "check_idx": data["check_idx"] + 1} if isinstance(data.get("check_idx"), int) else data
        return ", ".join(
            f"{t.get('ad_' + k, k.replace('_', ' '))}: "
            + (str(len(v)) if isinstance(v, list) else f"“{v}”" if k == "comment" else word(v))
            for k, v in shown.items()
        )
    return str(data)


class BadRequest(ValueError):
    """A request the client must change; answered 400 with this message."""


class Unauthorized(Exception):
    def __init__(self, status: int, message: str, retry_after: int = 0):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class WebContext:
    """What the station web's endpoints share, stored on the app (``app.state.ctx``, web_context):
    the station, its sessions and templates, the setup pages' gate, frame cache and worker, the event
    streams' broadcaster and the cycle-time histogram."""

    station: WebPort
    secret_key: str = ""
    templates: Jinja2Templates = field(default_factory=lambda: page_templates(HERE / "templates"))
    sessions: SessionStore = field(default_factory=SessionStore)
    tz: tzinfo = field(default_factory=lambda: station_zone(None))
    setup: SetupState = field(default_factory=SetupState)
    cycles: CycleHistogram = field(default_factory=CycleHistogram)
    gates: GateRuns = field(default_factory=GateRuns)
    broadcaster: Broadcaster = field(kw_only=True)  # made on the loop that serves the web
    # check(password, stored hash or None): run in a worker thread for each login (http/accounts.py)
    password_check: Callable[[str, str | None], bool] = field(default=check_login, kw_only=True)

    def __post_init__(self) -> None:
        self.accounts = Accounts(lambda: self.users, self.sessions, check=self.password_check)
        self.tz = station_zone(self.config.station.timezone)
        env = self.templates.env
        env.filters["localtime"] = lambda value: display(value, self.tz)
        env.filters["iso_local"] = lambda value: iso_local(value, self.tz)
        env.globals["zone_label"] = zone_label(self.tz)
        env.globals["zone_name"] = zone_name(self.tz)

    @property
    def config(self) -> StationConfig:
        """The config in effect: a change saved on the setup pages applies without a restart."""
        return self.station.config

    @property
    def store(self) -> Store:
        return self.station.store

    @property
    def users(self) -> dict[str, WebUser]:
        return {u.name: u for u in self.config.web.users}

    async def query(self, fn, *args, **kwargs):
        """Run a log query in a worker thread: no SQLite work on the loop that serves the PLC."""
        return await run_in_threadpool(fn, self.store, *args, **kwargs)

    async def run(self, fn, *args):
        """Blocking work that is not a log query (files, image decoding) in a worker thread."""
        return await run_in_threadpool(fn, *args)

    # -- who is asking ---------------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        """The live server-side session of the request's cookie (safe on the loop: no hashing); ended
        when its user was removed or the user's role or password changed (a live config apply)."""
        return self.accounts.session(request.session.get("sid"))

    def session_user(self, request: Request) -> User | None:
        session = self.session(request)
        return session.user if session else None

    def basic_csrf(self, name: str) -> str:
        """The CSRF token of an HTTP Basic client (fetched from /api/session with the same credentials)."""
        return hmac.new(self.secret_key.encode(), b"basic\0" + name.encode(), hashlib.sha256).hexdigest()[:32]

    async def user(self, request: Request) -> User | None:
        session = self.session(request)
        if session is not None:
            return session.user
        try:
            user = await self.accounts.basic_user(request.headers.get("authorization", ""), client_address(request))
        except LoginRefused as err:
            raise Unauthorized(err.status, err.message, retry_after=err.retry_after) from None
        if user is not None:
            request.state.basic_auth = True
        return user

    async def require_view(self, request: Request) -> User | None:
        user = await self.user(request) if not self.config.web.open_view else self.session_user(request)
        if not self.config.web.open_view and user is None:
            raise Unauthorized(401, "log in to view")
        return user

    async def require(self, request: Request, action: str, form: dict | None = None) -> User:
        """The user, allowed to do ``action``, whose request carries the right CSRF token — for a
        session the session's token, for HTTP Basic the user's (every state change, however sent)."""
        user = await self.user(request)
        if user is None:
            raise Unauthorized(401, "log in first")
        if not allowed(user, action):
            raise Unauthorized(403, f"role '{user.role}' may not {action.replace('_', ' ')}")
        sent = request.headers.get("x-csrf-token") or (form or {}).get("csrf")
        session = self.session(request)
        expected = session.csrf if session else self.basic_csrf(user.name)
        if not csrf_ok(expected, sent):
            raise Unauthorized(403, "missing or wrong CSRF token")
        return user

    # -- rendering -------------------------------------------------------------------------------
    def lang(self, request: Request) -> str:
        """A choice made on the page (?lang=, kept in a cookie) > the station's pinned language >
        the browser's Accept-Language > English."""
        return pick_language(
            self.config.station.language,
            request.headers.get("accept-language"),
            request.query_params.get("lang"),
            request.cookies.get("lang"),
        )

    def page(self, request: Request, name: str, **context) -> Response:
        lang = self.lang(request)
        session = self.session(request)
        response = self.templates.TemplateResponse(
            request,
            name,
            {
                "t": LABELS[lang],
                "lang": lang,
                "user": session.user if session else None,
                "tr": lambda text: translate(text, lang),
                "audit_text": lambda detail: audit_text(detail, LABELS[lang]),
                "csrf": session.csrf if session else "",
                "station": self.config.station.name,
                **context,
            },
        )
        if request.query_params.get("lang") in LABELS:  # the choice holds on every page from now on
            response.set_cookie("lang", lang, max_age=365 * 86400, samesite="strict")
        return response


def web_context(request: Request) -> WebContext:
    """The station web's shared state, which app.build_app stores on the app as ``state.ctx``: every
    endpoint reaches the station, its config, log, users and templates through it."""
    return cast(WebContext, request.app.state.ctx)
