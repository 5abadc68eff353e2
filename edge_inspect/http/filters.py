"""Review filters from query parameters — one set of rules for the station's review and the plant's:
the same values are accepted and the same refused (FilterError, answered 400 by both webs)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

VERDICTS = ("PASS", "FAIL", "ERROR")
LATEST_UNIX = 253402300799.0  # 9999-12-31T23:59:59Z


class FilterError(ValueError):
    """A filter value that cannot be used; names the parameter."""


def parse_time(value: str, name: str, tz: tzinfo | None = None) -> float:
    """An ISO date/time as unix seconds; without an offset it is in ``tz`` (the station's zone)."""
    try:  # a trailing Z (UTC): Python 3.10's fromisoformat does not read it
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    except ValueError:
        raise FilterError(f"{name}: {value!r} is not an ISO date/time (e.g. 2026-11-29T08:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    try:
        unix = moment.timestamp()
    except (OverflowError, ValueError):
        unix = -1.0
    if not 0 <= unix <= LATEST_UNIX:
        raise FilterError(f"{name}: {value!r} is out of range (1970 to 9999)")
    return unix


def _text(q: Any, name: str) -> str | None:
    value = q.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def whole_number(q: Any, name: str, lo: int, hi: int) -> int | None:
    """Query parameter ``name`` as an int in lo..hi, None when absent or blank. Only ASCII digits:
    str.isdigit alone would let "\u0663" (an Arabic-Indic three) or "\u00b2" through."""
    value = _text(q, name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not lo <= int(value) <= hi:
        raise FilterError(f"{name}: {value!r} is not a whole number in {lo}..{hi}")
    return int(value)


def page_number(q: Any) -> int:
    """The ``page`` parameter (1..10^6, default 1) as every list of both webs reads it."""
    page = whole_number(q, "page", 1, 10**6)
    return 1 if page is None else page


def common_filters(q: Any, tz: tzinfo | None = None) -> dict[str, Any]:
    """The filters both reviews have, from a query (a mapping with ``get``): since, until (unix seconds),
    verdict, recipe (0..65535, the PLC's register), check, part_id, page (1..10^6), per_page (1..500)."""
    verdict = _text(q, "verdict")
    if verdict and verdict.upper() not in VERDICTS:
        raise FilterError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    recipe = whole_number(q, "recipe", 0, 65535)
    page = page_number(q)
    per_page = whole_number(q, "per_page", 1, 500)
    since, until = _text(q, "from"), _text(q, "to")
    return {
        "since": parse_time(since, "from", tz) if since else None,
        "until": parse_time(until, "to", tz) if until else None,
        "verdict": verdict.upper() if verdict else None,
        "recipe": recipe,
        "check": _text(q, "check"),
        "part_id": _text(q, "part_id"),
        "page": page,
        "per_page": 50 if per_page is None else per_page,
    }
