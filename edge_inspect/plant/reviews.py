"""QA's review from the stations into PostgreSQL (docs/fleet.md, "review"; tables of migration 4): the
rows of a batch's review messages, written in the batch's transaction.

A disposition replaces the one stored for its inspection only when the station wrote it later (its
``seq``, the review's audit row id in the station's log, is higher): a redelivered or late earlier
one changes nothing. A correction is stored once per row id in the station's log. The check
definitions the message carries are kept per inspection, the latest review's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg
from psycopg.types.json import Jsonb


@dataclass
class ReviewRows:
    dispositions: list[tuple] = field(default_factory=list)
    corrections: list[tuple] = field(default_factory=list)
    definitions: list[tuple] = field(default_factory=list)

    def add(self, key: str, m: dict) -> None:
        """One review message (checked against the fleet schema) of station ``key``."""
        at, seq = datetime.fromtimestamp(m["at"], timezone.utc), m["seq"]
        if m["event"] == "disposition":
            d = m["disposition"]
            self.dispositions.append(
                (key, m["inspection_id"], d["disposition"], d.get("comment"), m.get("reviewer"), at, seq, m["id"])
            )
        else:
            c = m["correction"]
            self.corrections.extend(
                (key, p["id"], m["inspection_id"], c["check_idx"], p["x"], p["y"], p["action"], m.get("reviewer"), at,
                 seq, m["id"])
                for p in c["points"]
            )  # fmt: skip
        if m.get("definitions"):
            self.definitions.append((key, m["inspection_id"], Jsonb(m["definitions"]), seq))

    def messages(self) -> int:
        """How many review messages the rows came from (a correction's points share their message)."""
        return len({d[-1] for d in self.dispositions} | {c[-1] for c in self.corrections})

    def write(self, cur: psycopg.Cursor) -> None:
        if self.dispositions:
            cur.executemany(
                "INSERT INTO review_dispositions (station_key, inspection_id, disposition, comment, reviewer, "
                "reviewed_at, review_seq, msg_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (station_key, inspection_id) DO UPDATE SET disposition = excluded.disposition, "
                "comment = excluded.comment, reviewer = excluded.reviewer, reviewed_at = excluded.reviewed_at, "
                "review_seq = excluded.review_seq, msg_id = excluded.msg_id, received_at = now() "
                "WHERE review_dispositions.review_seq < excluded.review_seq",
                self.dispositions,
            )
        if self.corrections:
            cur.executemany(
                "INSERT INTO review_corrections (station_key, correction_id, inspection_id, check_idx, x, y, action, "
                "reviewer, reviewed_at, review_seq, msg_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (station_key, correction_id) DO NOTHING",
                self.corrections,
            )
        if self.definitions:
            cur.executemany(
                "INSERT INTO review_checks (station_key, inspection_id, definitions, review_seq) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (station_key, inspection_id) DO UPDATE SET "
                "definitions = excluded.definitions, review_seq = excluded.review_seq "
                "WHERE review_checks.review_seq < excluded.review_seq",
                self.definitions,
            )
