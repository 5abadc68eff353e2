"""Reviewed records from a station: the folder ``edge-inspect dataset export`` writes, read for
fine-tuning (docs/model-lifecycle.md, "Fine-tune").

``train.jsonl`` is what training may draw; ``holdout.jsonl`` is read only to count it for the
lineage and to check that no image is on both sides (the split is by the image's hash, so an export
that has one on both was edited by hand). Each record's ``source`` carries its provenance: station,
inspection, reviewer, disposition, whether a reviewer corrected its points and the model version it
was judged by. How the records are weighted against each other is ``draw_weights``.

A corrected check's points come in the order the log holds them (the model's, then those a reviewer
added); a pointing record's target is rewritten in the order the student learned to answer in
(``in_reading_order``), so that a correction does not teach it another order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspect.vlm.points import format_molmo2_points, parse_points

from .dataset import JsonlError, Record, read_jsonl

TRAIN, HOLDOUT = "train.jsonl", "holdout.jsonl"


def is_export(path: Path) -> bool:
    """A folder ``dataset export`` wrote (its train.jsonl), as opposed to one records file."""
    return path.is_dir()


@dataclass
class ReviewedSet:
    folder: Path
    train: list[Record]
    sources: list[dict[str, Any]]  # the train records' provenance, in the same order
    summary: dict[str, Any]  # the lineage's account of the folder (provenance)


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise JsonlError(f"{path}:{number}: bad record ({err})") from None
            if not isinstance(row, dict) or not isinstance(row.get("source"), dict):
                raise JsonlError(f"{path}:{number}: no 'source' (not a record of 'edge-inspect dataset export')")
            rows.append(row)
    return rows


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_export(folder: Path) -> ReviewedSet:
    """The train side of an export folder and its provenance summary; JsonlError naming the file."""
    folder = Path(folder)
    train_path, holdout_path = folder / TRAIN, folder / HOLDOUT
    if not train_path.is_file():
        raise JsonlError(f"{folder}: no {TRAIN} (not a folder written by 'edge-inspect dataset export')")
    train_rows = _rows(train_path)
    held_rows = _rows(holdout_path) if holdout_path.is_file() else []
    held_images = {r["source"].get("image_sha256") or r["image"] for r in held_rows}
    for number, row in enumerate(train_rows, start=1):
        if (row["source"].get("image_sha256") or row["image"]) in held_images:
            raise JsonlError(f"{train_path}: record {number}: its image is also in {HOLDOUT}; export again")
    records = [in_reading_order(r) for r in read_jsonl(train_path, load_masks=False)]
    if len(records) != len(train_rows):
        raise JsonlError(f"{train_path}: {len(records)} records read, {len(train_rows)} expected")
    return ReviewedSet(folder, records, [r["source"] for r in train_rows], summarize(folder, train_rows, held_rows))


def in_reading_order(rec: Record) -> Record:
    """A pointing record with its points top to bottom in bands of a tenth of the height, then left to
    right (tasks.reading_order, the order the student answers in), its target rewritten to match."""
    if rec.kind != "point" or len(rec.points) < 2:
        return rec
    label = parse_points(rec.target).points[0].label if parse_points(rec.target).points else ""
    rec.points = sorted(rec.points, key=lambda p: (round(p[1] * 10), p[0]))
    rec.target = format_molmo2_points(rec.points, label or "object")
    return rec


def summarize(folder: Path, train: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the reviewed records came from: stations, inspections, reviewers, the model versions
    their labels were made against, dispositions, corrections, per check."""
    every = train + holdout
    sources = [r["source"] for r in every]

    def counted(key: str) -> dict[str, int]:
        return dict(sorted(Counter(str(s.get(key)) for s in sources if s.get(key) is not None).items()))

    return {
        "folder": str(folder.resolve()),
        "train_records": len(train),
        "holdout_records": len(holdout),
        "train_sha256": _digest(folder / TRAIN),
        "holdout_sha256": _digest(folder / HOLDOUT) if (folder / HOLDOUT).is_file() else None,
        "inspections": len({(s.get("station"), s.get("inspection")) for s in sources}),
        "images": len({s.get("image_sha256") for s in sources}),
        "stations": counted("station"),
        "reviewers": counted("reviewer"),
        "models": counted("model"),
        "dispositions": counted("disposition"),
        "corrected_records": sum(bool(s.get("corrected")) for s in sources),
        "checks": dict(sorted(Counter(str(r.get("task")) for r in train).items())),
        "first": min((str(s["ts"]) for s in sources if s.get("ts")), default=None),
        "last": max((str(s["ts"]) for s in sources if s.get("ts")), default=None),
    }


def draw_weights(sources: list[dict[str, Any]], corrected_weight: float) -> np.ndarray:
    """Each train record's probability of being drawn for a reviewed slot of a batch: a record whose
    points a reviewer corrected (the model was wrong there, and such records are few) counts
    ``corrected_weight`` times a confirmed one."""
    weights = np.array([corrected_weight if s.get("corrected") else 1.0 for s in sources], dtype=float)
    return weights / weights.sum()
