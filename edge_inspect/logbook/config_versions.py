"""Every station config the daemon ran or saved: the whole file, its sha256, who, when and from where
(boot, an edit found on disk, the setup pages, a rollback). A version and its audit row commit
together; retention never prunes them (docs/setup.md)."""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass

from .review import reading
from .store import Store, inserted_id, utc_stamp

SOURCES = ("boot", "disk", "web", "rollback")


@dataclass(frozen=True)
class ConfigVersion:
    id: int
    sha256: str
    ts: str
    ts_unix: float
    author: str
    source: str
    comment: str
    yaml: str


def record(
    store: Store, text: str, sha256: str, author: str, source: str, comment: str = "", action: str = "config"
) -> int:
    """Keep ``text`` as a new version (with an audit row naming it); returns its id."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {SOURCES}")
    now = time.time()
    with store.transaction() as db:
        previous = db.execute("select sha256 from config_versions order by id desc limit 1").fetchone()
        cursor = db.execute(
            "insert into config_versions (sha256, ts, ts_unix, author, source, comment, yaml) "
            "values (?, ?, ?, ?, ?, ?, ?)",
            [sha256, utc_stamp(now), now, author, source, comment, text],
        )
        version_id = inserted_id(cursor)
        detail = {
            "version": version_id,
            "source": source,
            "sha256": sha256[:16],
            "before": previous[0][:16] if previous else None,
        }
        if comment:
            detail["comment"] = comment
        db.execute(
            "insert into audit (ts, user, action, inspection_id, detail) values (?, ?, ?, ?, ?)",
            [utc_stamp(now), author, action, None, json.dumps(detail)],
        )
    return version_id


def latest(store: Store) -> ConfigVersion | None:
    with reading(store) as db:
        rows = list(db.query("select * from config_versions order by id desc limit 1"))
    return ConfigVersion(**rows[0]) if rows else None


def get(store: Store, version_id: int) -> ConfigVersion | None:
    if not 0 < version_id < 2**63:
        return None
    with reading(store) as db:
        rows = list(db.query("select * from config_versions where id = ?", [version_id]))
    return ConfigVersion(**rows[0]) if rows else None


def with_sha256(store: Store, sha256: str) -> ConfigVersion | None:
    """The newest version with this hash."""
    with reading(store) as db:
        rows = list(db.query("select * from config_versions where sha256 = ? order by id desc limit 1", [sha256]))
    return ConfigVersion(**rows[0]) if rows else None


def history(store: Store, limit: int = 200) -> list[dict]:
    """The newest versions first, without their text."""
    with reading(store) as db:
        return list(
            db.query(
                "select id, sha256, ts, ts_unix, author, source, comment from config_versions order by id desc limit ?",
                [limit],
            )
        )


def previous(store: Store, version_id: int) -> ConfigVersion | None:
    with reading(store) as db:
        rows = list(db.query("select * from config_versions where id < ? order by id desc limit 1", [version_id]))
    return ConfigVersion(**rows[0]) if rows else None


def diff(before: str, after: str, before_name: str = "before", after_name: str = "after") -> str:
    """A unified diff of two config texts (empty when they are the same)."""
    return "".join(
        difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), before_name, after_name)
    )
