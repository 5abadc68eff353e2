"""The alarm history: every alarm with when it was raised, cleared and acknowledged, and by whom.

Written from a worker thread (the station hands alarm events over; nothing here runs on the loop
that serves the PLC). Rows older than the log's retention period go with the inspections.
"""

from __future__ import annotations

import time

from .review import reading
from .store import Store


def raised(store: Store, code: str, message: str, at: float | None = None) -> None:
    with store.transaction() as db:
        db.execute(
            "insert into alarms (code, message, raised_at) values (?, ?, ?)",
            [code, message, time.time() if at is None else at],
        )


def cleared(store: Store, code: str, at: float | None = None) -> None:
    with store.transaction() as db:
        db.execute(
            "update alarms set cleared_at = ? where id = (select max(id) from alarms where code = ? "
            "and cleared_at is null)",
            [time.time() if at is None else at, code],
        )


def close_left_open(store: Store, at: float | None = None) -> list[str]:
    """At a station's start: the alarms a previous run left open (it stopped, or was killed, before they
    cleared) are closed with ``cleared_at`` = ``at`` (the start). Returns their codes, oldest first."""
    at = time.time() if at is None else at
    with store.transaction() as db:
        codes = [r[0] for r in db.execute("select code from alarms where cleared_at is null order by id")]
        db.execute("update alarms set cleared_at = ? where cleared_at is null", [at])
    return list(dict.fromkeys(codes))


def acknowledged(store: Store, code: str, user: str, at: float | None = None) -> None:
    with store.transaction() as db:
        db.execute(
            "update alarms set acknowledged_at = ?, acknowledged_by = ? where id = (select max(id) "
            "from alarms where code = ? and acknowledged_at is null)",
            [time.time() if at is None else at, user, code],
        )


def history(store: Store, page: int = 1, per_page: int = 100, code: str | None = None) -> tuple[list[dict], bool]:
    """Alarms, newest first, and whether there are more."""
    where, args = (" where code = ?", [code]) if code else ("", [])
    with reading(store) as db:
        rows = list(
            db.query(
                f"select * from alarms{where} order by id desc limit ? offset ?",
                [*args, per_page + 1, (page - 1) * per_page],
            )
        )
    return rows[:per_page], len(rows) > per_page
