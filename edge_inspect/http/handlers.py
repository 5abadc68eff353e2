"""Exception handlers typed by the exception they take: Starlette's table is typed for handlers of
any Exception, so each is wrapped once here instead of each web loosening its own signatures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

E = TypeVar("E", bound=Exception)
Handler = Callable[[Request, Exception], Awaitable[Response]]


def handles(kind: type[E], handler: Callable[[Request, E], Awaitable[Response]]) -> tuple[type[Exception], Handler]:
    """An entry of Starlette's ``exception_handlers``: ``handler`` called for ``kind`` (and its subclasses)."""

    async def run(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, kind):  # Starlette looks handlers up by the exception's class
            raise exc
        return await handler(request, exc)

    return kind, run
