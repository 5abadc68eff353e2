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
    "setup": {"integrator"},  # the setup pages and their API: live view, recipes, try, I/O, config versions
}

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """The parts of a stored hash (n, r, p, salt, digest); ValueError naming what is wrong."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a password hash from `edge-inspect user hash-password` (scrypt$N$r$p$salt$digest)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        raise ValueError("password hash: N, r, p must be numbers and salt, digest base64") from None
    if n < 2**10 or n > 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError(f"password hash: scrypt parameters N={n} r={r} p={p} are out of range")
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("password hash: salt or digest too short")
    return n, r, p, salt, digest


# Checked when the user name is unknown, so a login takes as long whether or not the user exists.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def check_login(password: str, stored: str | None) -> bool:
    """verify_password, in the same time whether or not the user exists (``stored`` None)."""
    ok = verify_password(password, stored or _DUMMY_HASH)
    return ok and stored is not None


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
        return self.retry_after(client, now) > 0

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        q = self._failures[client]
        while q and now - q[0] > self.window_s:
            q.popleft()
        if len(q) < self.attempts:
            return 0
        return max(1, int(q[-self.attempts] + self.window_s - now + 0.999))

    def failed(self, client: str, now: float | None = None) -> None:
        self._failures[client].append(time.monotonic() if now is None else now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic …`` header; None for any other or a malformed one."""
    if not header.lower().startswith("basic "):
        return None
    try:
        name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return name, password


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(session_token: str | None, sent: str | None) -> bool:
    return bool(session_token) and bool(sent) and hmac.compare_digest(session_token, sent)
