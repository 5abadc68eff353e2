"""What a fine-tune draws: reviewed records mixed with replay of earlier data, and the lineage it
writes (docs/model-lifecycle.md, "Fine-tune").

Every example of every batch is drawn from its index alone (so ``--resume`` continues the same
stream): with probability ``share`` it is replay, else a reviewed record. Replay comes from parts
generated on the fly (the generator's tasks, as the student was first trained: ``generated``) and/or
from records files of earlier, e.g. teacher-labelled, data; several replay sources split the share
evenly. A reviewed record is drawn with replacement, with the probability ``reviewed.draw_weights``
gives it. So however few the reviewed records are, they fill ``1 - share`` of every batch on average,
and replay fills the rest: neither drowns the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import JsonlError, Record, read_jsonl, sim_record
from .reviewed import HOLDOUT, ReviewedSet, draw_weights, is_export, read_export

GENERATED = "generated"
DEFAULT_SHARE = 0.5
DEFAULT_CORRECTED_WEIGHT = 3.0


def _refuse_holdout(path: Path, what: str) -> None:
    if path.name == HOLDOUT:
        raise JsonlError(f"{path}: {what} must not be a holdout split (it is for the gate, never for training)")


@dataclass
class Mix:
    """Index → the record to train on."""

    reviewed: list[Record]
    probabilities: np.ndarray | None  # per reviewed record
    replay: list[str]  # GENERATED and/or records file paths, in the order given
    replay_records: dict[str, list[Record]]
    share: float
    seed: int
    generated_seed: int  # the index → generator seed base of generated replay
    task_weights: dict[str, float] | None = None
    augment: bool = True
    defect_counts: tuple[int, ...] | None = None
    defect_kinds: tuple[str, ...] | None = None

    def pick(self, index: int) -> tuple[str, int]:
        """The source of example ``index`` ("reviewed", GENERATED or a records file) and the record's
        position in it (the generator seed's offset for generated parts). Cheap: the training loop
        tallies the mix with it."""
        rng = np.random.default_rng([self.seed, index, 4_099])
        if self.reviewed and not (self.replay and rng.random() < self.share):
            assert self.probabilities is not None
            return "reviewed", int(rng.choice(len(self.reviewed), p=self.probabilities))
        name = self.replay[int(rng.integers(len(self.replay)))]
        if name == GENERATED:
            return name, index
        return name, int(rng.integers(len(self.replay_records[name])))

    def draw(self, index: int) -> Record:
        name, k = self.pick(index)
        if name == "reviewed":
            return self.reviewed[k]
        if name == GENERATED:
            return sim_record(
                self.generated_seed + k,
                weights=self.task_weights,
                augment=self.augment,
                defect_counts=self.defect_counts,
                defect_kinds=self.defect_kinds,
            )
        return self.replay_records[name][k]


def _file_identity(path: Path) -> dict[str, Any]:
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def build_mix(
    data: str | None,
    replay: list[str] | None,
    share: float,
    corrected_weight: float,
    seed: int,
    generated_seed: int,
    task_weights: dict[str, float] | None = None,
    augment: bool = True,
    defect_counts: tuple[int, ...] | None = None,
    defect_kinds: tuple[str, ...] | None = None,
) -> tuple[Mix | None, dict[str, Any]]:
    """The mix for ``--data``/``--replay`` and the data part of the lineage. None (no mix: the
    records file or generated parts as before) when ``data`` is a records file and no replay is named.
    ``replay`` None: ``generated`` for an export folder, none for a records file."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"replay share {share}: between 0 and 1 (1 would never draw the reviewed records)")
    if corrected_weight <= 0:
        raise ValueError(f"corrected weight {corrected_weight}: must be > 0")
    path = Path(data) if data else None
    if path is not None and path.name == "train.jsonl" and (path.parent / HOLDOUT).is_file():
        path = path.parent  # an export's train file: read as the export it is part of
    if path is not None:
        if not path.exists():
            raise JsonlError(
                f"{path}: not found (--data: a records file or a folder 'edge-inspect dataset export' wrote)"
            )
        _refuse_holdout(path, "--data")
    export: ReviewedSet | None = read_export(path) if path is not None and is_export(path) else None
    if replay is None:
        replay = [GENERATED] if export is not None else []
    replay = list(dict.fromkeys(replay))  # each source once
    lineage: dict[str, Any] = {"export": export.summary if export else None}
    if export is None and path is not None:
        lineage["records"] = _file_identity(path)
    if not replay:
        lineage["replay"] = None
        if export is None:
            return None, lineage
    replay_records = {}
    for name in replay:
        if name != GENERATED:
            _refuse_holdout(Path(name), "--replay")
            if not Path(name).is_file():
                raise JsonlError(f"{name}: not found (--replay: 'generated' or a records file)")
            replay_records[name] = read_jsonl(Path(name), load_masks=False)
            if not replay_records[name]:
                raise JsonlError(f"{name}: no records to replay")
    if export is not None:
        reviewed, probabilities = export.train, draw_weights(export.sources, corrected_weight)
        if not reviewed:
            raise JsonlError(f"{path}/train.jsonl: no records")
    elif path is not None:
        reviewed, probabilities = read_jsonl(path, load_masks=False), None
        probabilities = np.full(len(reviewed), 1 / len(reviewed)) if reviewed else None
    else:
        reviewed, probabilities = [], None
    if not reviewed and not replay:
        raise ValueError("nothing to train on: no --data and no --replay")
    if replay:
        lineage["replay"] = {
            "share": share if reviewed else 1.0,
            "sources": [
                {
                    "generated": True,
                    "task_weights": task_weights,
                    "augment": augment,
                    "defect_counts": defect_counts,
                    "defect_kinds": defect_kinds,
                }
                if name == GENERATED
                else {**_file_identity(Path(name)), "records": len(replay_records[name])}
                for name in replay
            ],
        }
    if export is not None:
        assert probabilities is not None
        lineage["weighting"] = {
            "corrected_weight": corrected_weight,
            "corrected_records": int(sum(bool(s.get("corrected")) for s in export.sources)),
            "corrected_draw_share": round(
                float(sum(p for p, s in zip(probabilities, export.sources, strict=True) if s.get("corrected"))), 6
            ),
        }
    mix = Mix(
        reviewed=reviewed,
        probabilities=probabilities,
        replay=replay,
        replay_records=replay_records,
        share=share,
        seed=seed,
        generated_seed=generated_seed,
        task_weights=task_weights,
        augment=augment,
        defect_counts=defect_counts,
        defect_kinds=defect_kinds,
    )
    return mix, lineage


def parent_of(bundle: str | None) -> dict[str, Any] | None:
    """The bundle a run starts from: its path and its version (the sha256 of its manifest)."""
    if not bundle:
        return None
    manifest = Path(bundle) / "manifest.json"
    version = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    return {"bundle": str(Path(bundle).resolve()), "version": version}
