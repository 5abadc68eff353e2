"""``edge-inspect dataset export``: reviewed inspections as training records (docs/model-lifecycle.md, "Labels from review"): each check
of a part QA has reviewed becomes one line of the distillation JSONL format (tools/distill/dataset.py)
where review tells its true answer, with the frame and where the label came from. Images are named by
their content's sha256, so a frame is written once however often it was inspected; the holdout split
is decided by that hash, so a record stays on its side as the set grows.

The labels, the records, the split and the writing are this module's, whoever holds the reviews: the
station's log (below) or the plant's database (commands/fleet_dataset.py) hands over ``Reviewed``
items, and both exports write what ``labelled`` and ``write`` make of them."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Recipe
from ..logbook import Store, corrections
from ..logbook.check_definitions import CheckInfo, RecipeChecks, recipe_checks
from ..logbook.review import reading
from ..vlm.grammar import object_label
from ..vlm.points import format_molmo2_points

__all__ = ["CheckInfo", "RecipeChecks", "recipe_checks"]  # where they were before logbook/check_definitions.py

HOLDOUT_PERCENT = 10


def holdout(image_sha256: str, percent: int = HOLDOUT_PERCENT) -> bool:
    """The record's side, from its image's hash alone: the same on every export."""
    return int(image_sha256[:8], 16) % 100 < percent


@dataclass(frozen=True)
class Frame:
    """A reviewed inspection's image: its content's sha256, its suffix, and where its bytes are."""

    digest: str
    suffix: str
    path: Path | None = None  # a file (the station's log)
    data: bytes | None = None  # or the bytes themselves (the plant's image store)

    def write(self, target: Path) -> None:
        if self.path is not None:
            shutil.copyfile(self.path, target)
        elif self.data is not None:
            target.write_bytes(self.data)


@dataclass
class Reviewed:
    """One reviewed inspection, as its log holds it, whoever holds the log."""

    id: int  # the inspection's id in the station's log
    ts: str  # its time as the station logged it (UTC ISO 8601)
    station: str
    model_sha256: str
    disposition: str | None
    reviewer: str | None  # the disposition's, else the latest correction's
    frame: Frame | None  # None: the frame is no longer kept (the rest is then left empty)
    checks: list[dict[str, Any]] = field(default_factory=list)  # idx, name, kind, status, answer
    definitions: dict[str, CheckInfo] = field(default_factory=dict)  # check name → as its recipe defined it
    model_points: dict[int, list[list[float]]] = field(default_factory=dict)  # check idx → the model's points
    corrected: dict[int, list[list[float]]] = field(default_factory=dict)  # checks a reviewer changed: points after
    provenance: dict[str, Any] = field(default_factory=dict)  # more of where it came from (the plant: site, line)


def label(
    item: Reviewed, check: dict[str, Any], info: CheckInfo, corrected: dict[int, list[list[float]]], model: dict
) -> Any:
    """A check's true answer as review tells it: points (pointing) or True/False (yes/no); None when
    review does not tell (a count QA called a false reject without correcting its points)."""
    idx, pointing = check["idx"], check["kind"] in ("point", "count")
    if pointing and idx in corrected:
        return corrected[idx]
    disposition, passed = item.disposition, check["status"] == "pass"
    said_yes = (check["answer"] or "").lower() == "yes"
    expect_yes = info.get("expect") == "yes"
    if passed and disposition in ("confirmed_defect", "false_reject"):
        return model.get(idx, []) if pointing else said_yes  # the part's verdict was not this check's doing
    if disposition == "confirmed_defect":  # the check failed, and rightly
        # a yes/no check fails on the other answer, or on an uncertain one: the truth is the other answer
        return model.get(idx, []) if pointing else not expect_yes
    if disposition == "false_reject":  # the check failed, wrongly: the expected answer is the true one
        if pointing:
            return [] if check["kind"] == "point" and info.get("max") == 0 else None  # no defect allowed, none there
        return expect_yes
    return None  # missed_defect without corrections: which check missed it is not known


@dataclass
class ExportReport:
    records: int = 0
    holdout: int = 0
    images: int = 0
    skipped_checks: int = 0
    inspections: int = 0
    missing_images: int = 0  # reviewed inspections whose frame is no longer there
    holdout_percent: int = HOLDOUT_PERCENT  # the split the export wrote

    def summary(self, out: Path | str) -> str:
        """What the export did, in one line, as both exports print it."""
        return (
            f"{self.records} records from {self.inspections} reviewed inspections "
            f"({self.holdout} in holdout.jsonl, ~{self.holdout_percent} % by image hash), {self.images} new images; "
            f"{self.skipped_checks} checks whose true answer review does not tell were left out -> {out}"
        )


@dataclass
class Labelled:
    """One training record as ``labelled`` yields it: the JSON line (``record``), its frame (``frame``,
    still where the log keeps it), the check as the log holds it and as the recipe defined it
    (``info``: prompt, kind, the rule's numbers and the check's settings)."""

    record: dict[str, Any]
    frame: Frame
    check: dict[str, Any]
    info: CheckInfo

    @property
    def digest(self) -> str:
        return self.frame.digest

    @property
    def source(self) -> Path | None:
        """The frame's file (the station's log); None where the bytes came from elsewhere (the plant)."""
        return self.frame.path

    @property
    def holdout(self) -> bool:
        return holdout(self.digest)


def labelled(items: Iterable[Reviewed], report: ExportReport | None = None) -> Iterator[Labelled]:
    """Every record the reviewed inspections give, in their order: one per check whose true answer review
    tells, the same question about the same frame once. ``report`` counts as it goes."""
    report = report if report is not None else ExportReport()
    seen: set[tuple[str, str]] = set()  # (image sha256, prompt): the same question about the same frame once
    for item in items:
        if item.frame is None:  # deleted by retention or by hand since (the plant: not fetched)
            report.missing_images += 1
            continue
        report.inspections += 1
        digest = item.frame.digest
        for check in item.checks:
            info = item.definitions.get(check["name"])
            prompt = info["prompt"] if info else None
            truth = label(item, check, info or {}, item.corrected, item.model_points) if prompt else None
            if prompt is None or truth is None or (digest, prompt) in seen:
                report.skipped_checks += truth is None
                continue
            seen.add((digest, prompt))
            pointing = check["kind"] in ("point", "count")
            name = object_label(prompt) or check["name"]
            record = {
                "image": f"images/{digest}{item.frame.suffix}", "prompt": prompt, "task": check["name"],
                "kind": "point" if pointing else "yes_no",
                "target": format_molmo2_points([tuple(p) for p in truth], name) if pointing
                else ("Yes." if truth else "No."),
                "points": truth if pointing else [], "masks": [], "answer": None if pointing else truth,
                "source": {"station": item.station, "inspection": item.id, "ts": item.ts,
                           "reviewer": item.reviewer, "disposition": item.disposition,
                           "corrected": check["idx"] in item.corrected, "model": item.model_sha256,
                           "image_sha256": digest, **item.provenance},
            }  # fmt: skip
            yield Labelled(record, item.frame, check, info or {})


def write(
    items: Iterable[Labelled], out: Path, report: ExportReport | None = None, holdout_percent: int = HOLDOUT_PERCENT
) -> ExportReport:
    """Write ``out``/train.jsonl, ``out``/holdout.jsonl and ``out``/images/<sha256>.<ext> (an image
    already there is kept); ``holdout_percent``: the share of images whose records go to the holdout."""
    report = report if report is not None else ExportReport()
    report.holdout_percent = holdout_percent
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    with open(out / "train.jsonl", "w", encoding="utf-8") as train, open(
        out / "holdout.jsonl", "w", encoding="utf-8"
    ) as held:  # fmt: skip
        for item in items:
            image = out / item.record["image"]
            if not image.exists():
                item.frame.write(image)
                report.images += 1
            side = held if holdout(item.digest, holdout_percent) else train
            side.write(json.dumps(item.record, ensure_ascii=False) + "\n")
            report.records += 1
            report.holdout += side is held
    return report


# -- the station's log -------------------------------------------------------------------------------


def _reviewed(store: Store, checks: RecipeChecks) -> Iterator[Reviewed]:
    """Inspections with a kept image and a disposition or a point correction, oldest first."""
    with reading(store) as db:
        rows = list(
            db.execute(
                "select i.id, i.ts, i.station, i.recipe, i.config_sha256, i.model_sha256, i.image_path, "
                "d.disposition, d.reviewer from inspections i left join dispositions d on d.inspection_id = i.id "
                "where i.image_path is not null and (d.disposition is not null or exists "
                "(select 1 from corrections c where c.inspection_id = i.id)) order by i.id"
            )
        )
    for inspection_id, ts, station, recipe, config_sha256, model_sha256, image_path, disposition, reviewer in rows:
        source = store.folder / image_path
        item = Reviewed(inspection_id, ts, station, model_sha256, disposition, reviewer, None)
        if not source.is_file():  # deleted by retention or by hand since
            yield item
            continue
        item.frame = Frame(hashlib.sha256(source.read_bytes()).hexdigest(), source.suffix, path=source)
        with reading(store) as db:
            item.checks = [
                {"idx": idx, "name": name, "kind": kind, "status": status, "answer": answer}
                for idx, name, kind, status, answer in db.execute(
                    "select idx, name, kind, status, answer from checks where inspection_id = ? order by idx",
                    [inspection_id],
                )
            ]
            for idx, x, y in db.execute("select check_idx, x, y from points where inspection_id = ?", [inspection_id]):
                item.model_points.setdefault(idx, []).append([x, y])
            changes = list(
                db.execute(
                    "select check_idx, x, y, action, reviewer from corrections where inspection_id = ? order by id",
                    [inspection_id],
                )
            )
        after = corrections.apply_corrections(item.model_points, [c[:4] for c in changes])
        touched = {c[0] for c in changes}
        item.corrected = {idx: pts for idx, pts in after.items() if idx in touched}  # what a reviewer changed
        if item.reviewer is None and changes:
            item.reviewer = changes[-1][4]
        item.definitions = checks.of(config_sha256, recipe)
        yield item


def reviewed_records(
    store: Store, current_recipes: Sequence[Recipe], report: ExportReport | None = None
) -> Iterator[Labelled]:
    """Every record the station's reviewed inspections give, oldest first: what ``export`` writes and
    what the gate (commands/gate.py) judges a model on (the holdout side). ``report`` counts as it goes."""
    return labelled(_reviewed(store, RecipeChecks(store, recipe_checks(current_recipes))), report)


def export(
    store: Store, out: Path, current_recipes: Sequence[Recipe], holdout_percent: int = HOLDOUT_PERCENT
) -> ExportReport:
    """The station's export: ``out``/train.jsonl, ``out``/holdout.jsonl and ``out``/images/<sha256>.<ext>."""
    report = ExportReport()
    return write(reviewed_records(store, current_recipes, report), out, report, holdout_percent)
