"""One time zone for everything a person reads: the station's (``station.timezone``, default the
operating system's). The log stores UTC; pages, filters, charts and CSV convert with these."""

from __future__ import annotations

import os
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def station_zone(name: str | None) -> tzinfo:
    """The named IANA zone, or the operating system's local zone (by its IANA name when
    /etc/localtime says which, so browsers can show the same zone)."""
    if name:
        return ZoneInfo(name)
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (OSError, ValueError, ZoneInfoNotFoundError):
        pass
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else timezone.utc


def zone_name(tz: tzinfo) -> str:
    """The IANA name when known ("" otherwise): for the browser's Intl time formatting."""
    return getattr(tz, "key", "") or ("UTC" if tz is timezone.utc else "")


def _as_datetime(value: float | str) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if value[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read a trailing Z (UTC)
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)  # the log's strings are UTC


def iso_local(value: float | str | None, tz: tzinfo, timespec: str = "seconds") -> str:
    """ISO 8601 with the zone's offset, to the second (2026-11-29T22:04:05+09:00) or, with
    ``timespec="milliseconds"``, to the millisecond (the CSV: 2026-11-29T22:04:05.123+09:00)."""
    if value is None or value == "":
        return ""
    return _as_datetime(value).astimezone(tz).isoformat(timespec=timespec)


def display(value: float | str | None, tz: tzinfo) -> str:
    """For tables: 2026-11-29 22:04:05 (the page names the zone once)."""
    text = iso_local(value, tz)
    return text[:19].replace("T", " ") if text else ""


def zone_label(tz: tzinfo) -> str:
    """e.g. 'Asia/Tokyo (UTC+09:00)'."""
    now = datetime.now(tz)
    offset = now.strftime("%z")
    name = getattr(tz, "key", None) or now.tzname() or "local"
    return f"{name} (UTC{offset[:3]}:{offset[3:]})"
