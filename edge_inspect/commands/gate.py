"""``edge-inspect model gate``: a version of the model store judged against production through the
appliance runtime (docs/model-lifecycle.md, "The gate"), on the station's reviewed holdout (the
records ``dataset export`` writes to holdout.jsonl, taken from the same code), on generated parts and
on the camera shift suite; the figures and rules are gate_rules.py. The report goes into the
version's record in the store (``version.json``, ``gate``), where promote looks for it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import CountCheck, GateConfig, PointCheck, QACheck, Recipe
from ..evaluation.costs import by_part, percentiles, time_parts
from ..evaluation.evaluate import BundlePredictor, evaluate_records
from ..evaluation.records import Record, sim_records
from ..evaluation.shifts import SHIFTS
from ..evaluation.tasks import TASKS
from ..modelstore import Version, utc_now
from ..vlm.bundle import BundleError
from . import gate_rules
from .dataset import Labelled, reviewed_records

SHIFT_TASKS = ["defects", "screws", "label", "label_missing"]  # as the tools' robustness suite asks
MEMORY_PARTS = 2


@dataclass
class GateSettings:
    cfg: GateConfig
    parts: int
    shift_parts: int
    threads: int = 0


class Progress:
    """Where the gate is, for the setup page: a small JSON file replaced at each step (no file: silent)."""

    def __init__(self, path: Path | None, total: int, **about: Any):
        self.path, self.total, self.done, self.about = path, total, 0, about
        self.update("starting")

    def update(self, phase: str, step: bool = False) -> None:
        self.done += step
        if self.path is None:
            return
        state = {**self.about, "state": "running", "phase": phase, "done": self.done, "total": self.total}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(state) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


# -- the reviewed holdout ----------------------------------------------------------------------------


def holdout(log_folder: Path, recipes: list[Recipe]) -> tuple[list[Record], list[Labelled]]:
    """The holdout side of the station's reviewed records, as evaluation records (a frame read once
    for all its questions), beside what the export knows of each."""
    from ..logbook import Store

    if not (log_folder / "inspections.db").is_file():
        return [], []
    store = Store(log_folder)
    try:
        items = [item for item in reviewed_records(store, recipes) if item.holdout]
    finally:
        store.close()
    frames: dict[str, np.ndarray] = {}
    records = []
    for item in sorted(items, key=lambda i: i.digest):  # a frame's questions side by side: encoded once
        if item.digest not in frames:
            bgr = cv2.imread(str(item.source), cv2.IMREAD_COLOR)
            if bgr is None:
                raise BundleError(f"{item.source}: a reviewed frame OpenCV cannot read")
            frames[item.digest] = bgr[:, :, ::-1].copy()
        r = item.record
        records.append(
            Record(
                prompt=r["prompt"], target=r["target"], task=r["task"], kind=r["kind"], image_path=item.source,
                image=frames[item.digest], points=[(float(x), float(y)) for x, y in r["points"]], answer=r["answer"],
            )
        )  # fmt: skip
    return records, sorted(items, key=lambda i: i.digest)


def _status(check: PointCheck | CountCheck | QACheck, predictor: BundlePredictor | None, rec: Record) -> str:
    """The check's status by its rule (inspection/checks.py): on the model's answer, or on the truth
    (``predictor`` None)."""
    from ..inspection.checks import judge_points, judge_qa

    rgb = rec.image if rec.image is not None else rec.rgb()
    if (rec.kind == "point") == isinstance(check, QACheck):
        raise ValueError(f"a {rec.kind} record judged by a {check.kind} check")
    if not isinstance(check, QACheck):
        if predictor is None:
            return judge_points(check, list(rec.points), False, "").status
        points, text = predictor.point(rgb, rec.prompt)
        from ..vlm.points import parse_points

        return judge_points(check, points, parse_points(text).malformed, text).status
    if predictor is None:
        return "pass" if ("yes" if rec.answer else "no") == check.expect else "fail"
    _, p_yes, mass = predictor.yes_no_scores(rgb, rec.prompt)
    return judge_qa(check, p_yes, abs(2 * p_yes - 1), mass=mass).status


def corrected_cases(
    items: list[Labelled], records: list[Record], predictors: dict[str, BundlePredictor]
) -> list[dict[str, Any]]:
    """Holdout records whose check went the wrong way on the line (the status review's truth gives is
    not the logged one), and whether each version now gets that status."""
    from pydantic import TypeAdapter, ValidationError

    from ..config import Check

    adapter: TypeAdapter[Any] = TypeAdapter(Check)
    cases = []
    for item, rec in zip(items, records, strict=True):
        try:
            check = adapter.validate_python(item.info.get("settings") or {})
        except ValidationError:
            continue  # a check the running schema no longer reads: its rule is not known
        truth = _status(check, None, rec)
        if truth == item.check["status"]:
            continue
        fixed = {who: _status(check, p, rec) == truth for who, p in predictors.items()}
        source = item.record["source"]
        cases.append({
            "inspection": source["inspection"], "check": item.check["name"], "logged": item.check["status"],
            "truth": truth, "disposition": source["disposition"], "corrected": source["corrected"], "fixed": fixed,
        })  # fmt: skip
    return cases


# -- running both versions ---------------------------------------------------------------------------


def memory(bundle: Path, first_seed: int, threads: int) -> dict[str, Any]:
    """The version's memory, measured in a process of its own (evaluation/costs.py)."""
    cmd = [sys.executable, "-m", "edge_inspect.evaluation.costs", str(bundle), "--parts", str(MEMORY_PARTS),
           "--first-seed", str(first_seed), "--threads", str(threads)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine(threads: int) -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor()
    try:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), cpu
        )
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
            "threads": threads, "python": platform.python_version()}  # fmt: skip


def run_gate(
    candidate: Version,
    production: Version,
    settings: GateSettings,
    log_folder: Path,
    recipes: list[Recipe],
    user: str,
    progress_path: Path | None = None,
) -> dict[str, Any]:
    """Both versions on every suite; the report (``passed``, ``problems``, the tables)."""
    cfg, started = settings.cfg, time.perf_counter()
    seeds = range(cfg.first_seed, cfg.first_seed + settings.parts)
    shift_seeds = range(cfg.first_seed, cfg.first_seed + min(settings.shift_parts, settings.parts))
    shifts = list(cfg.shifts) if len(shift_seeds) else []
    progress = Progress(
        progress_path, 2 * (2 + len(shifts)) + 3,
        version=candidate.id, against=production.id, by=user, started_at=utc_now(), pid=os.getpid(),
    )  # fmt: skip
    held, items = holdout(log_folder, recipes)
    generated = sim_records(seeds, list(TASKS))
    suites: list[tuple[str, str, list[Record]]] = [
        ("holdout", "Reviewed holdout", held),
        ("generated", "Generated parts", generated),
        *((f"shift:{name}", f"Camera shift {name}", sim_records(shift_seeds, SHIFT_TASKS, SHIFTS[name])) for name in shifts),
    ]  # fmt: skip
    progress.update("loading the versions")
    predictors = {"production": BundlePredictor(production.path, threads=settings.threads)}
    try:
        predictors["candidate"] = BundlePredictor(candidate.path, threads=settings.threads)
    except BundleError as err:
        return _report(candidate, production, settings, user, started, [], None, {}, {}, [f"does not load: {err}"])
    try:  # a version that loads but cannot judge a frame (its graphs refuse the input) fails here, with a report
        evaluate_records(predictors["candidate"], generated[:1], bootstrap=0)
        predictors["candidate"].forget()
    except Exception as err:  # ONNX Runtime's errors have no common base class of their own
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        return _report(candidate, production, settings, user, started, [], None, {}, {}, [f"does not run: {reason}"])
    tables = []
    for key, title, records in suites:
        figures = {}
        for who, predictor in predictors.items():
            progress.update(f"{title}: {who}")
            figures[who] = (
                gate_rules.check_figures(evaluate_records(predictor, records, bootstrap=0)) if records else {}
            )
            predictor.forget()
            progress.update(f"{title}: {who}", step=True)
        parts = len(by_part(records))
        tables.append({"suite": key, "title": title, "records": len(records), "parts": parts,
                       "rows": gate_rules.compare_suite(figures["candidate"], figures["production"], cfg)})  # fmt: skip
    progress.update("corrected cases")
    corrected = gate_rules.corrected_summary(corrected_cases(items, held, predictors), cfg)
    progress.update("latency", step=True)
    timed = time_parts(predictors, by_part(generated)[: cfg.latency_parts], cfg.latency_repeats)
    latency = {who: percentiles(ms) for who, ms in timed.items()}
    progress.update("memory", step=True)
    mem = {
        who: memory(v.path, cfg.first_seed, settings.threads)
        for who, v in (("candidate", candidate), ("production", production))
    }
    progress.update("report", step=True)
    costs = {
        "latency p95": gate_rules.budget(latency["candidate"]["p95"], latency["production"]["p95"], cfg.max_latency_ratio),
        "memory": gate_rules.budget(mem["candidate"].get("model_mb"), mem["production"].get("model_mb"), cfg.max_memory_ratio),
    }  # fmt: skip
    problems = gate_rules.verdict(tables, corrected, costs)
    report = _report(candidate, production, settings, user, started, tables, corrected, costs, {}, problems)
    report["latency_ms"], report["memory_mb"] = latency, mem
    report["latency_samples_ms"] = {who: [round(v, 2) for v in ms] for who, ms in timed.items()}
    return report


def _report(
    candidate: Version, production: Version, settings: GateSettings, user: str, started: float,
    suites: list[dict], corrected: dict | None, costs: dict, extra: dict, problems: list[str],
) -> dict[str, Any]:  # fmt: skip
    cfg = settings.cfg
    return {
        "version": candidate.id, "against": production.id, "passed": not problems, "problems": problems,
        "at": utc_now(), "by": user, "seconds": round(time.perf_counter() - started, 1),
        "settings": {**cfg.model_dump(), "parts": settings.parts, "shift_parts": min(settings.shift_parts, settings.parts),
                     "seeds": [cfg.first_seed, cfg.first_seed + settings.parts]},
        "machine": _machine(settings.threads), "suites": suites, "corrected": corrected, "costs": costs, **extra,
    }  # fmt: skip


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report for a terminal: judged figures per suite, corrected cases, costs, the verdict."""
    lines = [
        f"gate {report['version'][:12]} against production {report['against'][:12]}: "
        f"{report['settings']['parts']} generated parts, {report['settings']['shift_parts']} per camera shift, "
        f"{report['seconds']:.0f} s"
    ]
    for suite in report["suites"]:
        lines.append(f"{suite['title']} ({suite['records']} questions, {suite['parts']} parts)")
        for row in suite["rows"]:
            if "tolerance" not in row:
                continue
            mark = {True: "ok", False: "FAIL", None: "-"}[row["ok"]]
            fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
            delta = "" if row["delta"] is None else f"{row['delta']:+.3f}"
            lines.append(
                f"  {row['check']:<16} {row['figure']:<22} {fmt(row['production'])} → {fmt(row['candidate'])} {delta:>7}  {mark}"
            )
    c = report.get("corrected")
    if c is not None:
        share = "-" if c["share"]["candidate"] is None else f"{c['share']['candidate']:.2f}"
        lines.append(f"corrected cases: {c['fixed']['candidate']} of {c['cases']} right ({share}; production "
                     f"{c['fixed']['production']}; at least {c['min_share']})")  # fmt: skip
    lat = report.get("latency_ms")
    if lat:
        lines.append(
            f"latency per part p50/p95/p99 ms: candidate {lat['candidate']['p50']:.0f}/{lat['candidate']['p95']:.0f}/"
            f"{lat['candidate']['p99']:.0f}, production {lat['production']['p50']:.0f}/{lat['production']['p95']:.0f}/"
            f"{lat['production']['p99']:.0f} ({lat['candidate']['parts']} parts, alternating, fastest of "
            f"{report['settings']['latency_repeats']})"
        )
    mem = report.get("memory_mb")
    if mem:
        show = lambda m: m.get("error") or f"{m['model_mb']:.0f} MB (peak {m['peak_rss_mb']:.0f} MB)"  # noqa: E731
        lines.append(f"memory: candidate {show(mem['candidate'])}, production {show(mem['production'])}")
    if report["passed"]:
        lines.append("PASSED")
    else:  # one line per broken rule
        lines += [f"FAILED: {problem}" for problem in report["problems"]]
    return lines


def finish_progress(path: Path | None, state: str, **more: Any) -> None:
    """The progress file's last word: done (with the verdict) or failed (with the reason)."""
    if path is None:
        return
    try:
        now = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        now = {}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**now, "state": state, "ended_at": utc_now(), **more}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
