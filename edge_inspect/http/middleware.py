"""ASGI middleware both webs use: security headers on every response, and request bodies bounded per
path before any of them is read (a body over its path's limit is a 413 from its Content-Length alone,
a body without a Content-Length a 411), so nobody — logged in or not — makes the server read or
spool more than the endpoint takes. A response given before its request's body was read to the end
(a 401, a 429, an image refused from its header) closes the connection: the rest of the body is
never read."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_BODY_LIMIT = 64 * 1024  # JSON and form bodies: logins, dispositions, acknowledgements
BODY_READ_TIMEOUT_S = 10.0  # the longest pause between two pieces of a request body


class SecurityHeaders:
    """No sniffing, no framing, same-origin referrers; HSTS when the server speaks TLS."""

    def __init__(self, app: ASGIApp, tls: bool = False):
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
        ]
        if tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """At most ``limits[path]`` bytes of body (``default`` elsewhere), judged from Content-Length before
    the endpoint runs; a body that claims less than it sends is cut off at the limit, and one that
    stalls for ``read_timeout_s`` between two pieces is given up (408, see ``client_gone``). An answer
    sent before the body was read to its end carries ``Connection: close``, so the server stops
    reading there instead of receiving and dropping the rest (uvicorn would, to keep the connection)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: dict[str, int] | None = None,
        default: int = DEFAULT_BODY_LIMIT,
        read_timeout_s: float = BODY_READ_TIMEOUT_S,
    ):
        self.app, self.limits, self.default, self.read_timeout_s = app, limits or {}, default, read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is None and chunked:
            return await _refuse(send, 411, "send the body with a Content-Length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _refuse(send, 413, f"the body is larger than this endpoint takes ({limit} bytes)")
        seen, unread = 0, length is not None and int(length) > 0

        async def bounded() -> Message:
            nonlocal seen, unread
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except asyncio.TimeoutError:  # a slow-body client: stop waiting for it
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # more than announced: stop reading, as if the client had gone
                    return {"type": "http.disconnect"}
                unread = unread and message.get("more_body", False)
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, bounded, closing)


async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
    """The body stopped arriving (stalled, or more than its Content-Length): 408 and the connection
    closed, never a 500 — an endpoint that reads the body sees ClientDisconnect from BodyLimit."""
    return JSONResponse(
        {"error": "the request body did not arrive in time or was longer than announced"},
        status_code=408,
        headers={"connection": "close"},
    )


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
