"""Users, roles, password hashes (scrypt), login rate limiting and CSRF tokens.

Viewing may be open on the plant network (``web.open_view``); acting needs a login:
software trigger and alarm acknowledgement (operator, integrator), dispositions (qa,
integrator). API scripts may use HTTP Basic instead of the session cookie.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PERMISSIONS = {
    "trigger": {"operator", "integrator"},
    "ack_alarm": {"operator", "qa", "integrator"},
    "disposition": {"qa", "integrator"},
    "setup": {"integrator"},  # the setup pages and their API: live view, recipes, try, I/O, config versions
}

_N, _R, _P = 2**14, 8, 1

# The key derivation: hashlib.scrypt's signature (password, *, salt, n, r, p, dklen). A parameter of
# the functions below so that a test can count or time the derivations without patching hashlib.
Kdf = Callable[..., bytes]


def hash_password(password: str, salt: bytes | None = None, kdf: Kdf = hashlib.scrypt) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = kdf(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
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


def check_login(password: str, stored: str | None, kdf: Kdf = hashlib.scrypt) -> bool:
    """verify_password, in the same time whether or not the user exists (``stored`` None)."""
    ok = verify_password(password, stored or _DUMMY_HASH, kdf)
    return ok and stored is not None


def verify_password(password: str, stored: str, kdf: Kdf = hashlib.scrypt) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        actual = kdf(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(digest)),
        )
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
    """Failed logins counted per client address and per account, each with its own limit in ``window_s``.

    An attempt is reserved before the (slow) password check and counts as a failure until it is
    settled, so parallel guesses cannot overrun the limit while the hashes are computed. A success
    takes back only its own reservation and clears only its own account's count: logging in with
    one's own account does not reset the address's failures (the reset trick). Bounded: at most
    ``max_keys`` addresses and accounts are remembered (the oldest are forgotten first)."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0, account_attempts: int = 10, max_keys: int = 10_000):
        self.attempts, self.window_s, self.account_attempts, self.max_keys = (
            attempts,
            window_s,
            account_attempts,
            max_keys,
        )
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, account: str | None = None, now: float | None = None) -> int:
        """Seconds until ``client`` (and ``account``) may try again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return self._wait(client, account, now)

    def reserve(self, client: str, account: str | None = None, now: float | None = None) -> tuple[int, float]:
        """(seconds to wait, 0) when over a limit; else (0, token): the attempt is counted as failed until
        ``succeeded(client, account, token)`` takes it back."""
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = self._wait(client, account, now)
            if wait:
                return wait, 0.0
            for key in self._keys(client, account):
                self._queue(key).append(now)
            return 0, now

    def failed(self, client: str, account: str | None = None, now: float | None = None) -> None:
        """A failure that was not reserved (e.g. a malformed request)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in self._keys(client, account):
                self._queue(key).append(now)

    def succeeded(self, client: str, account: str | None = None, token: float | None = None) -> None:
        """The reserved attempt ``token`` succeeded: it is no failure, and ``account``'s count starts again."""
        with self._lock:
            q = self._failures.get(f"ip:{client}")
            if q is not None and token is not None:
                with contextlib.suppress(ValueError):
                    q.remove(token)
            if account is not None:
                self._failures.pop(f"user:{account}", None)

    @staticmethod
    def _keys(client: str, account: str | None) -> list[str]:
        return [f"ip:{client}"] + ([f"user:{account}"] if account is not None else [])

    def _queue(self, key: str) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            while len(self._failures) >= self.max_keys:
                self._failures.pop(next(iter(self._failures)))
            q = self._failures[key] = deque()
        return q

    def _wait(self, client: str, account: str | None, now: float) -> int:
        wait = 0
        for key, limit in ((f"ip:{client}", self.attempts), (f"user:{account}", self.account_attempts)):
            if key == "user:None" and account is None:
                continue
            q = self._failures.get(key)
            if q is None:
                continue
            while q and now - q[0] > self.window_s:
                q.popleft()
            if not q:
                del self._failures[key]
            elif len(q) >= limit:
                wait = max(wait, max(1, int(q[-limit] + self.window_s - now + 0.999)))
        return wait


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic …`` header; None for any other or a malformed one."""
    if not header.lower().startswith("basic "):
        return None
    try:
        name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return name, password


def csrf_ok(session_token: str | None, sent: str | None) -> bool:
    return (
        session_token is not None
        and sent is not None
        and bool(session_token)
        and hmac.compare_digest(session_token, sent)
    )
