"""The local defect log: SQLite (WAL, synchronous=FULL) through sqlite-utils, plus image files.

Every inspection is one row in ``inspections`` with its checks in ``checks`` and the model's
points in ``points``. Images are kept for every FAIL and ERROR and for every Nth PASS, each with
an annotated overlay. ``record()`` returns only after the transaction is committed, so the
station can tell the PLC afterwards: a result the PLC acted on is never missing from the log.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import sqlite_utils

from .checks import CheckOutcome, defect_count, failed_mask
from .verdict import Verdict

DB_NAME = "inspections.db"


class StoreError(Exception):
    """The log could not be written (disk full, I/O error)."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full


@dataclass(frozen=True)
class InspectionRecord:
    result_id: int
    station: str
    recipe: int
    recipe_name: str
    part_id: str
    trigger: str  # plc | interval | software
    verdict: Verdict
    error: str
    outcomes: list[CheckOutcome]
    timings_ms: dict[str, float]
    model_sha256: str
    config_sha256: str
    rois: list[list[tuple[float, float]] | None]


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, sqlite3.OperationalError) and "full" in str(err).lower()


def draw_overlay(frame: np.ndarray, rec: InspectionRecord) -> np.ndarray:
    """The frame with ROIs, the model's points and the verdict drawn on it."""
    out = frame.copy()
    h, w = out.shape[:2]
    colours = {"pass": (80, 200, 80), "fail": (40, 40, 230), "error": (0, 165, 255)}
    for roi in rec.rois:
        if roi:
            pts = np.array([[x * w, y * h] for x, y in roi], np.int32)
            cv2.polylines(out, [pts], True, (255, 200, 0), 1, cv2.LINE_AA)
    for outcome in rec.outcomes:
        for x, y in outcome.points:
            c = (int(x * w), int(y * h))
            cv2.circle(out, c, 6, colours[outcome.status], 2, cv2.LINE_AA)
            cv2.circle(out, c, 1, colours[outcome.status], -1)
    label = rec.verdict.name
    cv2.rectangle(out, (0, 0), (8 + 11 * len(label), 22), (0, 0, 0), -1)
    cv2.putText(out, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                colours[{"PASS": "pass", "FAIL": "fail"}.get(label, "error")], 1, cv2.LINE_AA)
    return out


class Store:
    def __init__(self, folder: str | Path, save_pass_every: int = 20, retention_days: float = 30.0,
                 max_disk_mb: float = 2048.0, min_free_mb: float = 200.0):
        self.folder = Path(folder)
        self.images = self.folder / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.save_pass_every = save_pass_every
        self.retention_s = retention_days * 86400
        self.max_disk_bytes = max_disk_mb * 1e6
        self.min_free_bytes = min_free_mb * 1e6
        self.path = self.folder / DB_NAME
        # One connection, used by the station's worker thread and (read-only) by others; a lock
        # serializes access, so SQLite's same-thread check is not needed.
        self.db = sqlite_utils.Database(sqlite3.connect(self.path, check_same_thread=False))
        self.lock = threading.RLock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._create_tables()
        self._passes = 0

    def _create_tables(self) -> None:
        db = self.db
        if "inspections" not in db.table_names():
            db["inspections"].create({
                "id": int, "result_id": int, "ts": str, "ts_unix": float, "station": str, "recipe": int,
                "recipe_name": str, "part_id": str, "trigger": str, "verdict": str, "error": str,
                "defect_count": int, "failed_checks": int, "grab_ms": float, "preprocess_ms": float,
                "vision_ms": float, "prefill_ms": float, "decode_ms": float, "inspect_ms": float,
                "cycle_ms": float, "model_sha256": str, "config_sha256": str, "image_path": str,
                "overlay_path": str,
            }, pk="id")  # fmt: skip
            db["inspections"].create_index(["ts_unix"])
            db["inspections"].create_index(["verdict"])
            db["inspections"].create_index(["result_id"])
        if "checks" not in db.table_names():
            db["checks"].create({
                "inspection_id": int, "idx": int, "name": str, "kind": str, "status": str, "reason": str,
                "counted": int, "answer": str, "p_yes": float, "margin": float, "ms": float,
            }, pk=("inspection_id", "idx"), foreign_keys=[("inspection_id", "inspections", "id")])  # fmt: skip
        if "points" not in db.table_names():
            db["points"].create({"inspection_id": int, "check_idx": int, "x": float, "y": float},
                                foreign_keys=[("inspection_id", "inspections", "id")])
            db["points"].create_index(["inspection_id"])

    # -- writing ---------------------------------------------------------------------------------
    def _keep_image(self, verdict: Verdict) -> bool:
        if verdict != Verdict.PASS:
            return True
        self._passes += 1
        return self.save_pass_every > 0 and self._passes % self.save_pass_every == 0

    def _write_images(self, frame: np.ndarray, rec: InspectionRecord, stamp: str) -> tuple[str | None, str | None]:
        if shutil.disk_usage(self.folder).free < self.min_free_bytes:
            raise StoreError(f"{self.folder}: less than {self.min_free_bytes / 1e6:.0f} MB free", disk_full=True)
        day = self.images / stamp[:10]
        day.mkdir(exist_ok=True)
        base = f"{stamp[11:].replace(':', '').replace('.', '_')}_{rec.result_id}_{rec.verdict.name.lower()}"
        raw, overlay = day / f"{base}.jpg", day / f"{base}_overlay.jpg"
        for path, image in ((raw, frame), (overlay, draw_overlay(frame, rec))):
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise StoreError(f"cannot encode image {path.name}")
            with open(path, "wb") as f:
                f.write(data.tobytes())
        return str(raw.relative_to(self.folder)), str(overlay.relative_to(self.folder))

    def record(self, rec: InspectionRecord, frame: np.ndarray | None) -> int:
        """Write images (when kept) and commit the rows; returns the inspection's row id."""
        now = time.time()
        stamp = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
        image_path = overlay_path = None
        try:
            if frame is not None and self._keep_image(rec.verdict):
                image_path, overlay_path = self._write_images(frame, rec, stamp)
            t = rec.timings_ms
            row = {
                "result_id": rec.result_id, "ts": stamp, "ts_unix": now, "station": rec.station, "recipe": rec.recipe,
                "recipe_name": rec.recipe_name, "part_id": rec.part_id, "trigger": rec.trigger,
                "verdict": rec.verdict.name, "error": rec.error,
                "defect_count": defect_count(rec.outcomes), "failed_checks": failed_mask(rec.outcomes),
                **{k: round(float(t.get(k, 0.0)), 2) for k in ("grab_ms", "preprocess_ms", "vision_ms", "prefill_ms",
                                                             "decode_ms", "inspect_ms", "cycle_ms")},
                "model_sha256": rec.model_sha256, "config_sha256": rec.config_sha256,
                "image_path": image_path, "overlay_path": overlay_path,
            }  # fmt: skip
            with self.lock, self.db.conn:  # one transaction: committed (fsynced, synchronous=FULL) on exit
                inspection_id = self.db["inspections"].insert(row).last_pk
                self.db["checks"].insert_all([{
                    "inspection_id": inspection_id, "idx": i, "name": o.name, "kind": o.kind, "status": o.status,
                    "reason": o.reason, "counted": o.counted, "answer": o.answer, "p_yes": o.p_yes,
                    "margin": o.margin, "ms": round(o.ms, 2)} for i, o in enumerate(rec.outcomes)])  # fmt: skip
                points = [{"inspection_id": inspection_id, "check_idx": i, "x": x, "y": y}
                          for i, o in enumerate(rec.outcomes) for x, y in o.points]
                if points:
                    self.db["points"].insert_all(points)
            return int(inspection_id)
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"log write failed: {err}", disk_full=_disk_full(err)) from None

    # -- retention ----------------------------------------------------------------------------
    def image_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.images.rglob("*.jpg"))

    def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        """Delete inspections older than the retention period, then the oldest images until the
        image folder fits the disk budget (those rows stay, without images)."""
        with self.lock:
            return self._enforce_retention(time.time() if now is None else now)

    def _enforce_retention(self, now: float) -> dict[str, int]:
        cutoff = now - self.retention_s
        old = list(self.db.query("select id, image_path, overlay_path from inspections where ts_unix < ?", [cutoff]))
        for row in old:
            self._unlink(row["image_path"], row["overlay_path"])
        with self.db.conn:
            ids = [r["id"] for r in old]
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                self.db.execute(f"delete from points where inspection_id in ({marks})", part)
                self.db.execute(f"delete from checks where inspection_id in ({marks})", part)
                self.db.execute(f"delete from inspections where id in ({marks})", part)
        trimmed = 0
        total = self.image_bytes()
        if total > self.max_disk_bytes:
            rows = self.db.query("select id, image_path, overlay_path from inspections where image_path is not null order by id")
            for row in rows:
                if total <= self.max_disk_bytes:
                    break
                total -= self._unlink(row["image_path"], row["overlay_path"])
                self.db.execute("update inspections set image_path = null, overlay_path = null where id = ?", [row["id"]])
                trimmed += 1
            self.db.conn.commit()
        return {"deleted": len(old), "images_trimmed": trimmed}

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
            self.db.close()

