"""Server-side login sessions: the cookie carries only a random session id, so logging out
revokes it everywhere, and a session ends after ``idle_s`` without requests or ``max_s`` in all.

Sessions live in memory: a restart of the daemon logs everybody out (documented in docs/api.md).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from .auth import User


@dataclass
class Session:
    user: User
    credential: str = ""  # the user's name, role and password hash at login, hashed (http/accounts.py)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self, idle_s: float = 1800.0, max_s: float = 12 * 3600.0):
        self.idle_s, self.max_s = idle_s, max_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User, credential: str = "") -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._expire(time.monotonic())
            self._sessions[sid] = session = Session(user, credential)
        return sid, session

    def get(self, sid: str | None, now: float | None = None) -> Session | None:
        """The live session of ``sid`` (touched: its idle time starts again), or None."""
        if not sid:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.created > self.max_s:
                del self._sessions[sid]
                return None
            session.last_seen = now
            return session

    def revoke(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid in [
            s for s, v in self._sessions.items() if now - v.last_seen > self.idle_s or now - v.created > self.max_s
        ]:
            del self._sessions[sid]
