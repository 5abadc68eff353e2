"""``edge-inspect dataset export``: reviewed inspections as training records (docs/model-lifecycle.md, "Labels from review"): each check
of a part QA has reviewed becomes one line of the distillation JSONL format (tools/distill/dataset.py)
where review tells its true answer, with the frame and where the label came from. Images are named by
their content's sha256, so a frame is written once however often it was inspected; the holdout split
is decided by that hash, so a record stays on its side as the set grows."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..logbook import Store, corrections
from ..logbook.review import reading
from ..vlm.grammar import object_label
from ..vlm.points import format_molmo2_points

HOLDOUT_PERCENT = 10


@dataclass
class Reviewed:
    """One reviewed inspection as the log holds it."""

    id: int
    ts: str
    station: str
    recipe: int
    config_sha256: str
    model_sha256: str
    image_path: str
    disposition: str | None
    reviewer: str | None
    checks: list[dict[str, Any]] = field(default_factory=list)  # idx, name, kind, status, answer


def holdout(image_sha256: str, percent: int = HOLDOUT_PERCENT) -> bool:
    """The record's side, from its image's hash alone: the same on every export."""
    return int(image_sha256[:8], 16) % 100 < percent


def _reviewed(store: Store) -> Iterator[Reviewed]:
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
        for row in rows:
            item = Reviewed(*row)
            item.checks = [
                {"idx": idx, "name": name, "kind": kind, "status": status, "answer": answer}
                for idx, name, kind, status, answer in db.execute(
                    "select idx, name, kind, status, answer from checks where inspection_id = ? order by idx",
                    [item.id],
                )
            ]
            if item.reviewer is None:
                found = db.execute(
                    "select reviewer from corrections where inspection_id = ? order by id desc limit 1", [item.id]
                ).fetchone()
                item.reviewer = found[0] if found else None
            yield item


CheckInfo = dict[str, Any]  # prompt (or question), kind, max (point checks), the settings as written


class RecipeChecks:
    """A recipe's check as the station ran it: from the station file of the inspection's config
    version (kept in the log), else from the running config's recipes."""

    def __init__(self, store: Store, current: dict[int, dict[str, CheckInfo]]):
        self.store, self.current = store, current
        self._by_config: dict[str, dict[int, dict[str, CheckInfo]] | None] = {}

    def get(self, config_sha256: str, recipe: int, check: str) -> CheckInfo | None:
        if config_sha256 not in self._by_config:
            self._by_config[config_sha256] = self._from_version(config_sha256)
        found = self._by_config[config_sha256] or self.current
        return found.get(recipe, {}).get(check)

    def _from_version(self, sha256: str) -> dict[int, dict[str, CheckInfo]] | None:
        with reading(self.store) as db:
            row = db.execute(
                "select yaml from config_versions where sha256 = ? order by id desc limit 1", [sha256]
            ).fetchone()
        if row is None:
            return None
        try:
            data = yaml.safe_load(row[0])
            return recipe_checks(data.get("recipes") or [])
        except (yaml.YAMLError, AttributeError, TypeError, KeyError, ValueError):
            return None


def recipe_checks(recipes: list[Any]) -> dict[int, dict[str, CheckInfo]]:
    """recipe number → check name → its prompt (pointing) or question (yes/no), kind and max."""
    out: dict[int, dict[str, CheckInfo]] = {}
    for r in recipes:
        r = r if isinstance(r, dict) else r.model_dump()
        out[int(r["number"])] = {
            c["name"]: {
                "prompt": c.get("prompt") or c.get("question"),
                "kind": c.get("kind"),
                "max": c.get("max", 0),
                "expect": c.get("expect"),
                "settings": c,  # the check as written: the gate judges a model's answer by its rule
            }
            for c in r.get("checks", [])
        }
    return out


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
    missing_images: int = 0  # reviewed inspections whose frame is no longer on disk


@dataclass
class Labelled:
    """One training record as ``reviewed_records`` yields it: the JSON line (``record``, its image
    still the log's file ``source``), the image's sha256, the check as the log holds it and as the
    recipe defined it (``info``: prompt, kind, the rule's numbers and the check's settings)."""

    record: dict[str, Any]
    source: Path
    digest: str
    check: dict[str, Any]
    info: CheckInfo

    @property
    def holdout(self) -> bool:
        return holdout(self.digest)


def reviewed_records(
    store: Store, current_recipes: list[Any], report: ExportReport | None = None
) -> Iterator[Labelled]:
    """Every record the station's reviewed inspections give, oldest first: what ``export`` writes and
    what the gate (commands/gate.py) judges a model on (the holdout side). ``report`` counts as it goes."""
    checks = RecipeChecks(store, recipe_checks(current_recipes))
    report = report if report is not None else ExportReport()
    seen: set[tuple[str, str]] = set()  # (image sha256, prompt): the same question about the same frame once
    for item in _reviewed(store):
        source = store.folder / item.image_path
        if not source.is_file():  # deleted by retention or by hand since
            report.missing_images += 1
            continue
        report.inspections += 1
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        image = f"images/{digest}{source.suffix}"
        points_now = corrections.corrected_points(store, item.id)
        model: dict[int, list[list[float]]] = {}
        with reading(store) as db:
            touched = {r[0] for r in db.execute(
                "select distinct check_idx from corrections where inspection_id = ?", [item.id])}  # fmt: skip
            for idx, x, y in db.execute("select check_idx, x, y from points where inspection_id = ?", [item.id]):
                model.setdefault(idx, []).append([x, y])
        corrected = {idx: pts for idx, pts in points_now.items() if idx in touched}  # what a reviewer changed
        for check in item.checks:
            info = checks.get(item.config_sha256, item.recipe, check["name"])
            prompt = info["prompt"] if info else None
            truth = label(item, check, info or {}, corrected, model) if prompt else None
            if prompt is None or truth is None or (digest, prompt) in seen:
                report.skipped_checks += truth is None
                continue
            seen.add((digest, prompt))
            pointing = check["kind"] in ("point", "count")
            name = object_label(prompt) or check["name"]
            record = {
                "image": image, "prompt": prompt, "task": check["name"],
                "kind": "point" if pointing else "yes_no",
                "target": format_molmo2_points([tuple(p) for p in truth], name) if pointing
                else ("Yes." if truth else "No."),
                "points": truth if pointing else [], "masks": [], "answer": None if pointing else truth,
                "source": {"station": item.station, "inspection": item.id, "ts": item.ts,
                           "reviewer": item.reviewer, "disposition": item.disposition,
                           "corrected": check["idx"] in corrected, "model": item.model_sha256,
                           "image_sha256": digest},
            }  # fmt: skip
            yield Labelled(record, source, digest, check, info or {})


def export(store: Store, out: Path, current_recipes: list[Any]) -> ExportReport:
    """Write ``out``/train.jsonl, ``out``/holdout.jsonl and ``out``/images/<sha256>.<ext>."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    report = ExportReport()
    with open(out / "train.jsonl", "w", encoding="utf-8") as train, open(out / "holdout.jsonl", "w") as held:
        for item in reviewed_records(store, current_recipes, report):
            image = out / item.record["image"]
            if not image.exists():
                shutil.copyfile(item.source, image)
                report.images += 1
            side = held if item.holdout else train
            side.write(json.dumps(item.record, ensure_ascii=False) + "\n")
            report.records += 1
            report.holdout += side is held
    return report
