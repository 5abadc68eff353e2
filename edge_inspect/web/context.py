"""What every web module shares: the station, its config and log, users, templates, and the
request helpers for who is asking and what they may do."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..config import StationConfig, WebUser
from ..log import Store
from .auth import LoginLimiter, User, allowed, csrf_ok, new_csrf_token, verify_password
from .i18n import LABELS, pick_language

if TYPE_CHECKING:
    from ..station import Station

HERE = Path(__file__).parent


class Unauthorized(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class WebContext:
    station: Station
    config: StationConfig
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=str(HERE / "templates")))
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    @property
    def store(self) -> Store:
        return self.station.store

    @property
    def users(self) -> dict[str, WebUser]:
        return {u.name: u for u in self.config.web.users}

    async def query(self, fn, *args, **kwargs):
        """Run a log query in a worker thread: no SQLite work on the loop that serves the PLC."""
        return await run_in_threadpool(fn, self.store, *args, **kwargs)

    # -- who is asking ---------------------------------------------------------------------------
    def session_user(self, request: Request) -> User | None:
        """The user of the session cookie (no password check, safe on the loop)."""
        users = self.users
        name = request.session.get("user")
        return User(name, users[name].role) if name in users else None

    async def user(self, request: Request) -> User | None:
        users = self.users
        name = request.session.get("user")
        if name in users:
            return User(name, users[name].role)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            u = users.get(name)
            client = request.client.host if request.client else "?"
            if u and not self.limiter.blocked(client) and await run_in_threadpool(verify_password, password,
                                                                                   u.password_hash):
                return User(u.name, u.role)
            self.limiter.failed(client)
        return None

    async def require_view(self, request: Request) -> User | None:
        user = await self.user(request)
        if not self.config.web.open_view and user is None:
            raise Unauthorized(401, "log in to view")
        return user

    async def require(self, request: Request, action: str, form: dict | None = None) -> User:
        user = await self.user(request)
        if user is None:
            raise Unauthorized(401, "log in first")
        if not allowed(user, action):
            raise Unauthorized(403, f"role '{user.role}' may not {action.replace('_', ' ')}")
        if request.session.get("user"):  # cookie sessions need the CSRF token; Basic auth does not
            sent = request.headers.get("x-csrf-token") or (form or {}).get("csrf")
            if not csrf_ok(request.session.get("csrf"), sent):
                raise Unauthorized(403, "missing or wrong CSRF token")
        return user

    # -- rendering -------------------------------------------------------------------------------
    def lang(self, request: Request) -> str:
        return pick_language(self.config.station.language, request.headers.get("accept-language"),
                             request.query_params.get("lang"))

    def page(self, request: Request, name: str, **context) -> Response:
        if "csrf" not in request.session:
            request.session["csrf"] = new_csrf_token()
        lang = self.lang(request)
        return self.templates.TemplateResponse(request, name, {
            "t": LABELS[lang], "lang": lang, "user": self.session_user(request), "csrf": request.session["csrf"],
            "station": self.config.station.name, **context})
