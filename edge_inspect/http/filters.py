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


def common_filters(q: Any, tz: tzinfo | None = None) -> dict[str, Any]:
    """The filters both reviews have, from a query (a mapping with ``get``): since, until (unix seconds),
    verdict, recipe (0..65535, the PLC's register), check, part_id, page (1..10^6), per_page (1..500)."""

    def get(name: str) -> str | None:
        value = q.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else None

    verdict = get("verdict")
    if verdict and verdict.upper() not in VERDICTS:
        raise FilterError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    ints: dict[str, int] = {}
    for name, lo, hi in (("recipe", 0, 65535), ("page", 1, 10**6), ("per_page", 1, 500)):
        value = get(name)
        if value is not None:
            if not (value.isascii() and value.isdigit()) or not lo <= int(value) <= hi:
                raise FilterError(f"{name}: {value!r} is not a whole number in {lo}..{hi}")
            ints[name] = int(value)
    since, until = get("from"), get("to")
    return {
        "since": parse_time(since, "from", tz) if since else None,
        "until": parse_time(until, "to", tz) if until else None,
        "verdict": verdict.upper() if verdict else None,
        "recipe": ints.get("recipe"),
        "check": get("check"),
        "part_id": get("part_id"),
        "page": ints.get("page", 1),
        "per_page": ints.get("per_page", 50),
    }
