"""Waiting for a condition instead of sleeping for a guessed time: poll until it holds, with a timeout
that only keeps a broken run from hanging."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition", every: float = 0.02):
    """Poll ``predicate()`` until it is truthy and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(every)


async def async_wait_until(predicate, timeout: float = 20.0, what: str = "condition", poll_s: float = 0.02):
    """Wait for ``predicate()`` (a plain or an awaitable result) to be truthy and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(poll_s)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0, every: float = 0.05):
    """The services' form (tests/support/fleet_services.py): what first, and the long timeout of a broker
    or a database that starts up on a busy machine."""
    return wait_until(condition, timeout, what, every)
