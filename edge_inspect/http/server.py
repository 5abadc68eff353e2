"""The uvicorn settings both webs run with: a deadline for each request's head, a short keep-alive,
bounded header size, and X-Forwarded-For believed only from the proxies the config names.

uvicorn's h11 protocol has no timer while a request head arrives (its keep-alive timer stops at the
first byte), so a client that sends a few header bytes and then nothing holds a connection for ever;
``HeadTimeoutH11`` closes it after ``head_timeout_s``. Request bodies have their own read timeout
(middleware.BodyLimit).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0  # from the connection (or the previous response) to a complete request head
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 16 * 1024  # request line and headers


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for every request head."""

    head_timeout_s = HEAD_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_overdue)

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_timer is not None and self.cycle is not None and not self.cycle.response_complete:
            self._head_timer.cancel()  # a request head arrived in time
            self._head_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_overdue(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def with_head_timeout(seconds: float) -> type[HeadTimeoutH11]:
    return type("HeadTimeoutH11", (HeadTimeoutH11,), {"head_timeout_s": seconds})


def server_config(app: Any, trusted_proxies: list[str] | tuple[str, ...] = (), head_timeout_s: float = HEAD_TIMEOUT_S,
                  **options: Any) -> uvicorn.Config:  # fmt: skip
    """uvicorn.Config for ``app``. ``trusted_proxies``: addresses whose X-Forwarded-For / -Proto headers
    are believed (a reverse proxy in front of the web); none by default, so the client's own address
    counts for the login limits and the log, whoever sends the header."""
    return uvicorn.Config(
        app,
        http=with_head_timeout(head_timeout_s),
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies) or None,
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        log_level="warning",
        access_log=False,
        **options,
    )
