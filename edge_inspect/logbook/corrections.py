"""Reviewers' corrections of the model's points: a point added where the model missed a defect, a
model point removed where there was none. Each change is stored with its audit row in one
transaction; the corrected points per check are the training labels a retraining run reads
(exported as JSON and CSV)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime, timezone

from .review import FilterError, reading
from .store import Store, inserted_id

MATCH = 0.03  # a removal names a model point within this distance (fractions of the frame)


def _point(value, what: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise FilterError(f"{what}: {value!r} is not a point [x, y]") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise FilterError(f"{what}: {value!r} lies outside the frame (coordinates are fractions 0..1)")
    return x, y


def add(store: Store, inspection_id: int, check_idx: int, added: list, removed: list, reviewer: str) -> dict:
    """Store one review's corrections of check ``check_idx``; returns the check's points after them.
    With fleet publishing, their message goes into the outbox in the same transaction (docs/fleet.md)."""
    if not isinstance(added, list) or not isinstance(removed, list) or len(added) + len(removed) > 200:
        raise FilterError("add and remove must be lists of at most 200 points")
    adds = [_point(p, "add") for p in added]
    removes = [_point(p, "remove") for p in removed]
    at = time.time()
    now = datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
    with store.transaction() as db:
        kind = db.execute(
            "select kind from checks where inspection_id = ? and idx = ?",
            [inspection_id, check_idx if isinstance(check_idx, int) else -1],
        ).fetchone()
        if kind is None:
            raise FilterError(f"check_idx: {check_idx!r} is not a check of inspection {inspection_id}")
        if kind[0] not in ("point", "count"):
            raise FilterError(
                f"check_idx: check {check_idx} is a {kind[0]} check; only point and count checks have points"
            )
        rows = []  # each with the id the log gives it: the plant keeps a correction once, whatever comes twice
        for action, points in (("add", adds), ("remove", removes)):
            for x, y in points:
                cursor = db.execute(
                    "insert into corrections (inspection_id, check_idx, x, y, action, reviewer, ts) "
                    "values (?, ?, ?, ?, ?, ?, ?)",
                    [inspection_id, check_idx, x, y, action, reviewer, now],
                )
                rows.append({"id": inserted_id(cursor), "x": x, "y": y, "action": action})
        cursor = db.execute(
            "insert into audit (ts, user, action, inspection_id, detail) values (?, ?, ?, ?, ?)",
            [
                now,
                reviewer,
                "correction",
                inspection_id,
                json.dumps({"check_idx": check_idx, "added": adds, "removed": removes}),
            ],
        )
        store.queue_review(
            db,
            inspection_id,
            {"event": "correction", "seq": inserted_id(cursor), "at": at, "reviewer": reviewer,
             "correction": {"check_idx": check_idx, "points": rows}},
        )  # fmt: skip
    return corrected_points(store, inspection_id)


def corrected_points(store: Store, inspection_id: int) -> dict[int, list[list[float]]]:
    """Per check: the model's points, minus those removed, plus those added (in review order)."""
    with reading(store) as db:
        model = list(db.execute("select check_idx, x, y from points where inspection_id = ?", [inspection_id]))
        changes = list(
            db.execute(
                "select check_idx, x, y, action from corrections where inspection_id = ? order by id", [inspection_id]
            )
        )
    points: dict[int, list[list[float]]] = {}
    for idx, x, y in model:
        points.setdefault(idx, []).append([x, y])
    return apply_corrections(points, changes)


def apply_corrections(
    model: dict[int, list[list[float]]], changes: Iterable[tuple[int, float, float, str]]
) -> dict[int, list[list[float]]]:
    """``model`` (check index → the model's points) after ``changes`` (check index, x, y, "add" or
    "remove"; in review order): a removal takes the nearest point within MATCH. The station's log and
    the plant's database (commands/fleet_dataset.py) both count on this one rule."""
    points = {idx: [list(p) for p in pts] for idx, pts in model.items()}
    for idx, x, y, action in changes:
        current = points.setdefault(idx, [])
        if action == "add":
            current.append([x, y])
        else:
            near = [p for p in current if (p[0] - x) ** 2 + (p[1] - y) ** 2 <= MATCH**2]
            if near:
                current.remove(min(near, key=lambda p: (p[0] - x) ** 2 + (p[1] - y) ** 2))
    return points


def export(store: Store) -> list[dict]:
    """Every corrected inspection as a training record: image, prompt per check, model and corrected points."""
    with reading(store) as db:
        ids = [r[0] for r in db.execute("select distinct inspection_id from corrections order by inspection_id")]
        records = []
        for inspection_id in ids:
            row = db.execute(
                "select id, result_id, ts, recipe, part_id, image_path, model_sha256 from inspections where id = ?",
                [inspection_id],
            ).fetchone()
            if row is None:
                continue
            checks = list(
                db.execute("select idx, name, kind from checks where inspection_id = ? order by idx", [inspection_id])
            )
            records.append(
                {
                    "id": row[0],
                    "result_id": row[1],
                    "ts": row[2],
                    "recipe": row[3],
                    "part_id": row[4],
                    "image_path": row[5],
                    "model_sha256": row[6],
                    "checks": checks,
                }
            )
    for record in records:
        corrected = corrected_points(store, record["id"])
        with reading(store) as db:
            model = list(db.execute("select check_idx, x, y from points where inspection_id = ?", [record["id"]]))
        record["checks"] = [
            {
                "idx": idx,
                "name": name,
                "kind": kind,
                "model_points": [[x, y] for i, x, y in model if i == idx],
                "corrected_points": corrected.get(idx, []),
            }
            for idx, name, kind in record["checks"]
        ]
    return records
