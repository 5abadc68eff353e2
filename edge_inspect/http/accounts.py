"""Logins for a web server — the station's and the plant's use this one implementation: password
checks off the event loop behind the login limits, server-side sessions that end at once when their
user is removed or the user's role or password changes, HTTP Basic for scripts."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from .auth import LoginLimiter, User, basic_credentials, check_login, csrf_ok
from .sessions import Session, SessionStore


class Account(Protocol):
    """A user as the config holds it (config.WebUser), read only."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def password_hash(self) -> str: ...


class LoginRefused(Exception):
    """Wrong user or password (401), or too many failed attempts (429, ``retry_after`` seconds)."""

    def __init__(self, status: int, message: str, retry_after: int = 0):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


def credential(account: Account) -> str:
    """What a session depends on: the user's name, role and password hash. A session made under one
    credential ends when the user's current credential is another (demoted, new password)."""
    return hashlib.sha256(f"{account.name}\0{account.role}\0{account.password_hash}".encode()).hexdigest()


class Accounts:
    def __init__(
        self,
        users: Callable[[], Mapping[str, Account]],
        sessions: SessionStore | None = None,
        limiter: LoginLimiter | None = None,
        check: Callable[[str, str | None], bool] = check_login,
    ):
        """``users``: the accounts as they are now, by name (called on every check, so a live change of
        the config applies to the next request); ``check(password, stored hash or None)``: the password check."""
        self.users, self.check = users, check
        self.sessions = sessions or SessionStore()
        self.limiter = limiter or LoginLimiter()

    def session(self, sid: str | None) -> Session | None:
        """The live session of ``sid``; None (and the session ended) when its user was removed or the
        user's role or password changed since the login. Safe on the event loop: no hashing."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        account = self.users().get(session.user.name)
        if account is None or credential(account) != session.credential:
            self.sessions.revoke(sid)
            return None
        return session

    async def verify(self, name: str, password: str, client: str) -> User:
        """The user whose password this is (checked in a worker thread); LoginRefused otherwise. The
        attempt is reserved in the limiter before the check, so parallel guesses cannot overrun it."""
        wait, token = self.limiter.reserve(client, name)
        if wait:
            raise LoginRefused(429, "too many failed logins; try again later", retry_after=wait)
        account = self.users().get(name)
        if not await run_in_threadpool(self.check, password, account.password_hash if account else None) or not account:
            raise LoginRefused(401, "wrong user or password")
        self.limiter.succeeded(client, name, token)
        return User(account.name, account.role)

    async def basic_user(self, authorization: str, client: str) -> User | None:
        """The user of an ``Authorization: Basic`` header (scripts: curl -u); None without one; LoginRefused
        for wrong credentials (the same limits as the login form)."""
        credentials = basic_credentials(authorization)
        if credentials is None:
            return None
        try:
            return await self.verify(*credentials, client)
        except LoginRefused as err:
            if err.status == 429:
                raise
            return None

    def open_session(self, user: User, old_sid: str | None) -> str:
        """A new session (a new id at every login: no session fixation); the old one ends."""
        self.sessions.revoke(old_sid)
        account = self.users()[user.name]
        sid, _ = self.sessions.create(user, credential(account))
        return sid


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


def safe_next(value: object) -> str:
    """Where to go after the login: a path on this server only (no open redirect)."""
    text = str(value or "/")
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


LOGIN_TOKEN = "login_token"


def login_token(request: Request) -> str:
    """The token the login form carries (kept in the signed session cookie): a login posted from
    another site's page lacks it, so nobody can log a browser in to an account of theirs (login CSRF)."""
    token = request.session.get(LOGIN_TOKEN)
    if not token:
        token = request.session[LOGIN_TOKEN] = secrets.token_urlsafe(24)
    return token


async def login_form(
    request: Request, accounts: Accounts, render_login: Callable[[Request, str | None, str], Response]
) -> Response:
    """POST /login of either web: the user's session on success (a redirect to ``next``), else the login
    page again with the reason (401, or 429 with Retry-After). ``render_login(request, error, next)``."""
    form = await request.form()
    nxt = safe_next(form.get("next", "/"))
    if not csrf_ok(request.session.get(LOGIN_TOKEN), str(form.get(LOGIN_TOKEN, ""))):
        response = render_login(request, "this login form has expired; please log in again", nxt)
        response.status_code = 403
        return response
    try:
        user = await accounts.verify(str(form.get("user", "")), str(form.get("password", "")), client_address(request))
    except LoginRefused as err:
        response = render_login(request, "too many attempts; wait a minute" if err.status == 429 else err.message, nxt)
        response.status_code = err.status
        if err.retry_after:
            response.headers["Retry-After"] = str(err.retry_after)
        return response
    sid = accounts.open_session(user, request.session.get("sid"))
    request.session.clear()
    request.session["sid"] = sid
    return RedirectResponse(nxt, 303)


async def logout(request: Request, accounts: Accounts) -> Response:
    """POST /logout with the session's CSRF token (form field ``csrf`` or X-CSRF-Token): the session ends
    on the server (the old cookie is worthless from now on). Without the token another site could log
    an operator out in the middle of a shift."""
    sid = request.session.get("sid")
    session = accounts.sessions.get(sid)
    if session is not None:
        sent = request.headers.get("x-csrf-token") or str((await request.form()).get("csrf", ""))
        if not csrf_ok(session.csrf, sent):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    accounts.sessions.revoke(sid)
    request.session.clear()
    return RedirectResponse("/", 303)
