"""Users, roles, password hashes (scrypt), login rate limiting and CSRF tokens.

Viewing may be open on the plant network (``web.open_view``); acting needs a login:
software trigger and alarm acknowledgement (operator, integrator), dispositions (qa,
integrator). API scripts may use HTTP Basic instead of the session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass

PERMISSIONS = {
    "trigger": {"operator", "integrator"},
    "ack_alarm": {"operator", "qa", "integrator"},
    "disposition": {"qa", "integrator"},
}

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


@dataclass(frozen=True)
class User:
    name: str
    role: str


def allowed(user: User | None, action: str) -> bool:
    return user is not None and user.role in PERMISSIONS[action]


class LoginLimiter:
    """At most ``attempts`` failed logins per client address in ``window_s``."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0):
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        q = self._failures[client]
        while q and now - q[0] > self.window_s:
            q.popleft()
        return len(q) >= self.attempts

    def failed(self, client: str, now: float | None = None) -> None:
        self._failures[client].append(time.monotonic() if now is None else now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(session_token: str | None, sent: str | None) -> bool:
    return bool(session_token) and bool(sent) and hmac.compare_digest(session_token, sent)
