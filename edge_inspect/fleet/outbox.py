"""The outbox in the station's log (table ``outbox``, log migration 7; docs/fleet.md).

Inspection messages are inserted by the store in the inspection's own transaction (Store.outbox_message);
alarm messages by ``enqueue``. The publisher reads them in order on a read-only connection of its
own (WAL: a reader never waits for the writer) and deletes them, through the store, once the
collector confirms that they are in the central database. Retention never touches the outbox; the
only other deletion is ``trim`` over the disk budget, which writes an audit row and is alarmed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass

from ..logbook import Store
from ..logbook.store import READER_CACHE_KIB, utc_stamp


@dataclass(frozen=True)
class Message:
    seq: int
    msg_id: str
    kind: str
    created: float
    payload: str


class Outbox:
    """Reads and confirms the outbox of one store; ``bytes`` and ``count`` are kept up to date."""

    def __init__(self, store: Store):
        self.store = store
        self._reader = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, check_same_thread=False)
        self._reader.execute("PRAGMA query_only=1")
        self._reader.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        self._lock = threading.Lock()
        count, size = self._reader.execute("select count(*), coalesce(sum(length(payload)), 0) from outbox").fetchone()
        self.count, self.bytes = int(count), int(size)
        self.dropped = 0  # messages trimmed over the budget since start

    def added(self, payload_len: int) -> None:
        """The store wrote a message (called inside its transaction; the counters are estimates)."""
        with self._lock:
            self.count += 1
            self.bytes += payload_len

    def enqueue(self, msg_id: str, kind: str, payload: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "insert into outbox (msg_id, kind, created, payload) values (?, ?, ?, ?)",
                [msg_id, kind, time.time(), payload],
            )
        self.added(len(payload))

    def after(self, seq: int, limit: int) -> list[Message]:
        """Messages with a sequence number above ``seq``, oldest first."""
        with self._lock:
            rows = self._reader.execute(
                "select seq, msg_id, kind, created, payload from outbox where seq > ? order by seq limit ?",
                [seq, limit],
            ).fetchall()
        return [Message(*r) for r in rows]

    def oldest(self) -> Message | None:
        rows = self.after(0, 1)
        return rows[0] if rows else None

    def confirm(self, msg_ids: list[str]) -> int:
        """Delete the messages the collector has stored; returns how many were still here."""
        if not msg_ids:
            return 0
        deleted = freed = 0
        with self.store.transaction() as db:
            for start in range(0, len(msg_ids), 500):
                part = msg_ids[start : start + 500]
                marks = ",".join("?" * len(part))
                n, size = db.execute(
                    f"select count(*), coalesce(sum(length(payload)), 0) from outbox where msg_id in ({marks})", part
                ).fetchone()
                db.execute(f"delete from outbox where msg_id in ({marks})", part)
                deleted, freed = deleted + n, freed + size
        with self._lock:
            self.count = max(0, self.count - deleted)
            self.bytes = max(0, self.bytes - freed)
        return deleted

    def trim(self, max_bytes: float, keep_fraction: float = 0.9) -> int:
        """Over the budget: delete the oldest messages until ``keep_fraction`` of it is used; one
        audit row (action ``fleet_outbox_dropped``) says how many and which. Returns how many."""
        if self.bytes <= max_bytes:
            return 0
        target = max_bytes * keep_fraction
        with self._lock:
            rows = self._reader.execute("select seq, length(payload), created from outbox order by seq").fetchall()
        total = sum(r[1] for r in rows)
        cut = []
        for seq, size, created in rows:
            if total <= target:
                break
            cut.append((seq, created))
            total -= size
        if not cut:
            return 0
        now = time.time()
        with self.store.transaction() as db:
            db.execute("delete from outbox where seq <= ?", [cut[-1][0]])
            db.execute(
                "insert into audit (ts, user, action, inspection_id, detail) values (?, ?, ?, ?, ?)",
                [
                    utc_stamp(now),
                    "system",
                    "fleet_outbox_dropped",
                    None,
                    json.dumps(
                        {
                            "dropped": len(cut),
                            "first_seq": cut[0][0],
                            "last_seq": cut[-1][0],
                            "oldest": utc_stamp(cut[0][1]),
                            "budget_mb": round(max_bytes / 1e6, 3),
                        }
                    ),
                ],
            )
        with self._lock:
            count, size = self._reader.execute(
                "select count(*), coalesce(sum(length(payload)), 0) from outbox"
            ).fetchone()
            self.count, self.bytes = int(count), int(size)
        self.dropped += len(cut)
        return len(cut)

    def close(self) -> None:
        with self._lock:
            self._reader.close()
