"""Writing the local defect log: SQLite (WAL, synchronous=FULL) plus image files.

Every inspection is one row in ``inspections`` with its checks in ``checks`` and the model's
points in ``points``, committed in one transaction. Images are kept for every FAIL and ERROR and
for every Nth PASS, each with an annotated overlay; they are written under a temporary name,
fsynced and renamed before the row that names them commits. ``record()`` returns only after the
commit, so the station tells the PLC afterwards: a result the PLC acted on is never missing.

When the disk runs low, images go first (the row is still written; ``low_space`` tells). When
SQLite itself cannot write, the record waits in a bounded in-memory queue and is written, in
order and with its original time, as soon as a write succeeds again (docs/log.md).
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import sqlite_utils

from ..durable import write_durably
from ..errors import UserError
from ..inspection.checks import defect_count, failed_mask
from ..inspection.overlay import draw_overlay
from ..verdict import Verdict
from .records import InspectionRecord, mm_scales
from .schema import SchemaError, migrate

DB_NAME = "inspections.db"
# SQLite's page cache per connection, in KiB, set explicitly: the writer's (SQLite's own default, ~2 MiB)
# fills over the first ~2,000 inspections and stays there. A reader (review.READERS of them, and the
# fleet outbox's) keeps less: its pages are the index's upper levels a page or an export walks, the
# rest comes from the OS's file cache, and a small cache is full after the first export instead of
# growing over days (docs/performance.md, "Memory over many parts"). At most 2 + 5 × 0.5 MiB in all.
CACHE_KIB = 2048
READER_CACHE_KIB = 512
# SQLite's memory in all, its page caches over every connection of the process together: a soft limit,
# so a cache that would grow past it reuses its own oldest page instead. The caches above would hold
# ~5.3 MB when every one is full, which a busy station with review traffic reached only after ~20,000
# inspections, growing ~100 KB per 1,000 on the way; under this limit the total is reached within the
# first few thousand and stays (docs/performance.md, "Memory over many parts").
SQLITE_HEAP_KIB = 3072
TIMINGS = ("grab_ms", "preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "inspect_ms", "cycle_ms")
log = logging.getLogger(__name__)


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id SQLite gave the row ``cursor`` has just inserted."""
    if cursor.lastrowid is None:
        raise sqlite3.DatabaseError("no row id after an insert")
    return cursor.lastrowid


class StoreError(UserError):
    """The log could not be opened or written (disk full, I/O error, newer schema). At start-up it is the
    machine refusing the station, a user's problem to fix (one line, exit 2); while running, the station
    catches it and raises its alarms."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, sqlite3.OperationalError) and "full" in str(err).lower()


def utc_stamp(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """The only writer of the log. One connection, serialized by ``lock``; safe from any thread."""

    def __init__(
        self,
        folder: str | Path,
        save_pass_every: int = 20,
        retention_days: float = 30.0,
        max_disk_mb: float = 2048.0,
        min_free_mb: float = 200.0,
        pending_max: int = 1000,
        free_bytes: Callable[[Path], int] | None = None,
    ):
        """``free_bytes``: the free space of the disk a folder is on (None: what the file system says;
        a test gives a disk that fills up)."""
        self.folder = Path(folder)
        self.images = self.folder / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.save_pass_every = save_pass_every
        self.retention_s = retention_days * 86400
        self.max_disk_bytes = max_disk_mb * 1e6
        self.min_free_bytes = min_free_mb * 1e6
        self.free_bytes = free_bytes or (lambda folder: shutil.disk_usage(folder).free)
        self.path = self.folder / DB_NAME
        # Autocommit mode: transactions are explicit (``transaction()``), so no library call can
        # commit half an inspection.
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db = sqlite_utils.Database(self.conn)
        self.lock = threading.RLock()
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self.conn.execute(f"PRAGMA soft_heap_limit={SQLITE_HEAP_KIB * 1024}")  # process-wide
            before, after = migrate(self.conn)
        except (SchemaError, sqlite3.DatabaseError) as err:  # a newer log, or a file that is no SQLite log
            self.conn.close()
            raise StoreError(f"{self.path}: {err}") from None
        if before != after:
            log.info("log %s migrated from schema %d to %d", self.path, before, after)
        self.sql_trace: Callable[[str], None] | None = None  # review.trace_sql's callback (diagnostics, tests)
        self._passes = 0
        self.low_space = False  # the last kept image was dropped for lack of space
        self.images_dropped = 0
        self._pending: deque[tuple[InspectionRecord, float]] = deque()
        self.pending_max = pending_max
        self.pending_dropped = 0  # records lost because the queue was full
        # Fleet publishing (docs/fleet.md): (inspection id, row, record) -> (msg_id, kind, payload),
        # inserted into the outbox in the inspection's own transaction. None: no outbox rows.
        self.outbox_message: Callable[[int, dict, InspectionRecord], tuple[str, str, str] | None] | None = None
        # And QA's review of an inspection (a disposition, a correction of points): (the review's
        # transaction, inspection id, the event) -> (msg_id, kind, payload), in the review's transaction.
        self.review_message: Callable[[sqlite3.Connection, int, dict], tuple[str, str, str] | None] | None = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction (BEGIN IMMEDIATE … COMMIT), rolled back if the block or the commit raises.
        A full disk or an I/O error can make SQLite roll the transaction back itself: then there is nothing
        to roll back, and the error that says why (e.g. "database or disk is full") is the one raised."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def queue_review(self, db: sqlite3.Connection, inspection_id: int, event: dict) -> None:
        """Inside a review's transaction (``db``): its fleet message into the outbox, if fleet publishing
        is on; the review and its message commit together (docs/fleet.md)."""
        message = self.review_message(db, inspection_id, event) if self.review_message is not None else None
        if message is not None:
            db.execute(
                "INSERT INTO outbox (msg_id, kind, created, payload) VALUES (?, ?, ?, ?)",
                [*message[:2], time.time(), message[2]],
            )

    # -- writing ---------------------------------------------------------------------------------
    def _keep_image(self, rec: InspectionRecord) -> bool:
        """Every FAIL and ERROR, every part sampled for review (QA needs to see it, and it may become
        training data), and every Nth PASS."""
        if rec.verdict != Verdict.PASS or rec.review_reason:
            return True
        self._passes += 1
        return self.save_pass_every > 0 and self._passes % self.save_pass_every == 0

    def _write_images(
        self, frame: np.ndarray, rec: InspectionRecord, stamp: str, others: Mapping[str, np.ndarray] | None = None
    ) -> tuple[str | None, str | None, dict[str, tuple[str, str]]]:
        """Write the frame and its overlay, and each other view's beside them (``<name>_<camera>.jpg``,
        ``<name>_<camera>_overlay.jpg``, each overlay with its view's checks); (None, None, {}) when the
        disk is too full for them."""
        if self.free_bytes(self.folder) < self.min_free_bytes:
            self._drop_images(f"less than {self.min_free_bytes / 1e6:.0f} MB free")
            return None, None, {}
        day = self.images / stamp[:10]
        base = f"{stamp[11:].replace(':', '').replace('.', '_')}_{rec.result_id}_{rec.verdict.name.lower()}"
        first = rec.views[0].view if rec.views else ""
        shots = [(first, frame), *((v, f) for v, f in (others or {}).items() if v != first)]
        written: list[tuple[str, Path, Path]] = []
        try:
            day.mkdir(exist_ok=True)
            for view, image in shots:
                suffix = rec.view_image_name(view) if view else ""
                raw, overlay = day / f"{base}{suffix}.jpg", day / f"{base}{suffix}_overlay.jpg"
                written.append((view, raw, overlay))
                only = rec.checks_on(view) if rec.views else None
                drawn = draw_overlay(image, rec.outcomes, rec.verdict, rec.rois, only=only)
                for path, picture in ((raw, image), (overlay, drawn)):
                    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
                    if not ok:
                        raise StoreError(f"cannot encode image {path.name}")
                    write_durably(path, data.tobytes())
        except OSError as err:
            if not _disk_full(err):
                raise
            for _, raw, overlay in written:
                for path in (raw, overlay, raw.with_name(raw.name + ".tmp"), overlay.with_name(overlay.name + ".tmp")):
                    path.unlink(missing_ok=True)
            self._drop_images(str(err))
            return None, None, {}
        self.low_space = False
        rel = [(v, str(r.relative_to(self.folder)), str(o.relative_to(self.folder))) for v, r, o in written]
        return rel[0][1], rel[0][2], {v: (r, o) for v, r, o in rel[1:]}

    def _drop_images(self, why: str) -> None:
        self.low_space = True
        self.images_dropped += 1
        log.warning("log %s: image not kept (%s)", self.folder, why)

    def _insert(
        self,
        rec: InspectionRecord,
        now: float,
        image_path: str | None,
        overlay_path: str | None,
        view_paths: Mapping[str, tuple[str, str]] | None = None,
    ) -> int:
        t = rec.timings_ms
        row = {
            "result_id": rec.result_id, "ts": utc_stamp(now), "ts_unix": now, "station": rec.station,
            "recipe": rec.recipe, "recipe_name": rec.recipe_name, "part_id": rec.part_id, "trigger": rec.trigger,
            "verdict": rec.verdict.name, "error": rec.error,
            "defect_count": defect_count(rec.outcomes), "failed_checks": failed_mask(rec.outcomes),
            **{k: round(float(t.get(k, 0.0)), 2) for k in TIMINGS},
            "model_sha256": rec.model_sha256, "config_sha256": rec.config_sha256,
            "recipe_sha256": rec.recipe_sha256 or None, "image_path": image_path, "overlay_path": overlay_path,
            "review_reason": rec.review_reason or None,
            "frame_id": rec.frame_id, "camera_ts_ns": rec.camera_ts_ns,
            "unfamiliar_score": None if rec.unfamiliar_score is None else round(rec.unfamiliar_score, 3),
            "unfamiliar_threshold": None if rec.unfamiliar_threshold is None else round(rec.unfamiliar_threshold, 3),
        }  # fmt: skip
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO inspections ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            inspection_id = inserted_id(cursor)
            db.executemany(
                "INSERT INTO checks (inspection_id, idx, name, kind, status, reason, counted, answer, p_yes, "
                "margin, mass, ms, view) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(inspection_id, i, o.name, o.kind, o.status, o.reason, o.counted, o.answer, o.p_yes, o.margin,
                  o.mass, round(o.ms, 2), o.view or None) for i, o in enumerate(rec.outcomes)])  # fmt: skip
            scales = mm_scales(rec)
            db.executemany(
                "INSERT INTO points (inspection_id, check_idx, x, y, x_mm, y_mm) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        inspection_id,
                        i,
                        x,
                        y,
                        round(x * scale[0], 2) if scale else None,
                        round(y * scale[1], 2) if scale else None,
                    )
                    for i, o in enumerate(rec.outcomes)
                    for scale in (scales.get(o.view) if rec.views else scales.get(""),)
                    for x, y in o.points
                ],
            )
            paths = view_paths or {}
            first_paths = (image_path, overlay_path)
            db.executemany(
                "INSERT INTO inspection_views (inspection_id, view, idx, frame_id, camera_ts_ns, width, height, "
                "grab_ms, error, image_path, overlay_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(inspection_id, v.view, k, v.frame_id, v.camera_ts_ns, *(v.frame_size or (None, None)),
                  round(v.grab_ms, 2), v.error or None, *(first_paths if k == 0 else paths.get(v.view, (None, None))))
                 for k, v in enumerate(rec.views)],
            )  # fmt: skip
            message = self.outbox_message(inspection_id, row, rec) if self.outbox_message is not None else None
            if message is not None:
                db.execute(
                    "INSERT INTO outbox (msg_id, kind, created, payload) VALUES (?, ?, ?, ?)",
                    [*message[:2], now, message[2]],
                )
        return inspection_id

    @property
    def pending(self) -> int:
        """Records waiting in memory for the log to become writable again."""
        return len(self._pending)

    def flush_pending(self) -> int:
        """Write waiting records, oldest first; returns how many were written. Raises StoreError
        when the log still cannot be written (the rest keep waiting)."""
        written = 0
        with self.lock:
            while self._pending:
                rec, at = self._pending[0]
                try:
                    self._insert(rec, at, None, None)
                except (OSError, sqlite3.Error) as err:
                    raise StoreError(f"log write failed: {err}", disk_full=_disk_full(err)) from None
                self._pending.popleft()
                written += 1
        if written:
            log.info("log %s: %d waiting record(s) written", self.folder, written)
        return written

    def record(
        self, rec: InspectionRecord, frame: np.ndarray | None, others: Mapping[str, np.ndarray] | None = None
    ) -> int:
        """Write images (when kept and there is room) and commit the rows in one transaction;
        returns the row id. When SQLite cannot write, the record waits in memory (bounded) and
        StoreError is raised. ``others``: a part seen by several cameras, its views' frames by camera
        (the first view's is ``frame``; the others are kept beside it)."""
        now = time.time()
        image_path = overlay_path = None
        view_paths: dict[str, tuple[str, str]] = {}
        with self.lock:
            try:
                self.flush_pending()
                if frame is not None and self._keep_image(rec):
                    image_path, overlay_path, view_paths = self._write_images(frame, rec, utc_stamp(now), others)
                return self._insert(rec, now, image_path, overlay_path, view_paths)
            except StoreError as err:
                self._wait(rec, now)
                raise StoreError(f"{err} ({self.pending} result(s) waiting in memory)", err.disk_full) from None
            except (OSError, sqlite3.Error) as err:
                self._unlink(image_path, overlay_path, *(p for pair in view_paths.values() for p in pair))
                self._wait(rec, now)
                raise StoreError(
                    f"log write failed: {err} ({self.pending} result(s) waiting in memory)", disk_full=_disk_full(err)
                ) from None

    def sample_afterwards(self, inspection_id: int, rec: InspectionRecord, frame: np.ndarray, reason: str) -> bool:
        """Put a logged inspection into the review queue after the fact (the shadow disagreed with it):
        its frame and overlay are written where the row has none, and ``reason`` is added to its
        review reason. False when the row is gone (retention). The images are written outside the
        log's lock, so the next inspection's commit does not wait for them."""
        with self.lock:
            row = self.conn.execute("select ts, image_path from inspections where id = ?", [inspection_id]).fetchone()
        if row is None:
            return False
        paths: tuple[str | None, str | None] = (None, None)
        if row[1] is None:
            paths = self._write_images(frame, rec, row[0] if isinstance(row[0], str) else utc_stamp(time.time()))[:2]
        try:
            with self.transaction() as db:
                if paths[0] is not None:
                    db.execute(
                        "update inspections set image_path = ?, overlay_path = ? where id = ? and image_path is null",
                        [*paths, inspection_id],
                    )
                db.execute(
                    "update inspections set review_reason = substr(coalesce(review_reason || '; ', '') || ?, 1, 500) "
                    "where id = ?",
                    [reason, inspection_id],
                )
                found = db.execute("select changes()").fetchone()[0] > 0
        except BaseException:
            self._unlink(*paths)
            raise
        if not found:
            self._unlink(*paths)
        return found

    def _wait(self, rec: InspectionRecord, at: float) -> None:
        if len(self._pending) >= self.pending_max:
            self._pending.popleft()
            self.pending_dropped += 1
            log.error(
                "log %s: waiting queue full (%d); the oldest waiting result is lost", self.folder, self.pending_max
            )
        self._pending.append((rec, at))

    # -- retention ----------------------------------------------------------------------------
    def image_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.images.rglob("*.jpg"))

    def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        """Delete inspections older than the retention period with their checks, points and
        dispositions (in one transaction), then the oldest images until the image folder fits the
        disk budget (those rows stay, without images). Audit rows are kept: they record what
        people did, and the ids they name are never reused (docs/log.md)."""
        with self.lock:
            return self._enforce_retention(time.time() if now is None else now)

    def _enforce_retention(self, now: float) -> dict[str, int]:
        cutoff = now - self.retention_s
        old = list(self.db.query("select id, image_path, overlay_path from inspections where ts_unix < ?", [cutoff]))
        if old:
            ids = [r["id"] for r in old]
            view_images = self._view_images(ids)
            with self.transaction() as db:
                for chunk in range(0, len(ids), 500):
                    part = ids[chunk : chunk + 500]
                    marks = ",".join("?" * len(part))
                    for table in ("points", "checks", "dispositions", "corrections", "shadow_checks", "shadow_results",
                                  "inspection_views"):  # fmt: skip
                        db.execute(f"delete from {table} where inspection_id in ({marks})", part)
                    db.execute(f"delete from inspections where id in ({marks})", part)
                db.execute(
                    "insert into audit (ts, user, action, inspection_id, detail) values (?, ?, ?, ?, ?)",
                    [
                        utc_stamp(now),
                        "system",
                        "retention",
                        None,
                        json.dumps(
                            {
                                "deleted": len(ids),
                                "first_id": min(ids),
                                "last_id": max(ids),
                                "older_than": utc_stamp(cutoff),
                            }
                        ),
                    ],
                )
            for row in old:
                self._unlink(row["image_path"], row["overlay_path"], *view_images.get(row["id"], ()))
        with self.transaction() as db:  # the alarm history keeps the same period
            db.execute("delete from alarms where cleared_at is not null and cleared_at < ?", [cutoff])
        trimmed = 0
        total = self.image_bytes()
        if total > self.max_disk_bytes:
            rows = list(
                self.db.query(
                    "select id, image_path, overlay_path from inspections where image_path is not null order by id"
                )
            )
            for row in rows:
                if total <= self.max_disk_bytes:
                    break
                others = self._view_images([row["id"]]).get(row["id"], [])
                with self.transaction() as db:
                    db.execute(
                        "update inspections set image_path = null, overlay_path = null where id = ?", [row["id"]]
                    )
                    db.execute(
                        "update inspection_views set image_path = null, overlay_path = null where inspection_id = ?",
                        [row["id"]],
                    )
                total -= self._unlink(row["image_path"], row["overlay_path"], *others)
                trimmed += 1
        return {"deleted": len(old), "images_trimmed": trimmed}

    def _view_images(self, ids: list[int]) -> dict[int, list[str]]:
        """The images of the views beyond the first of these inspections (their own rows name them)."""
        out: dict[int, list[str]] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            rows = self.conn.execute(
                f"select inspection_id, image_path, overlay_path from inspection_views where idx > 0 and "
                f"image_path is not null and inspection_id in ({','.join('?' * len(part))})",
                part,
            ).fetchall()
            for inspection_id, image, overlay in rows:
                out.setdefault(inspection_id, []).extend((image, overlay))
        return out

    def _unlink(self, *relative: str | None) -> int:
        freed = 0
        for rel in relative:
            if rel:
                path = self.folder / rel
                if path.is_file():
                    freed += path.stat().st_size
                    path.unlink()
        return freed

    # -- reading ---------------------------------------------------------------------------------
    def count(self) -> int:
        with self.lock:
            return self.db["inspections"].count

    def latest(self) -> dict | None:
        with self.lock:
            rows = list(self.db.query("select * from inspections order by id desc limit 1"))
        return rows[0] if rows else None

    def close(self) -> None:
        with self.lock:
            self.conn.close()
