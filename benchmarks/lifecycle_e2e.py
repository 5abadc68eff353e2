"""The model's whole loop on a live station, scripted and timed:
``python benchmarks/lifecycle_e2e.py [--threads 1] [--json out.json]`` (docs/model-lifecycle.md,
"End to end, measured").

1. **line** — a station (``edge-inspect run``: the synthetic camera, the demo student as the model
   store's production, the Modbus server, the web, review sampling on) whose line now makes chipped
   edges (``camera.synthetic.defect_kinds: [chip]``), a kind the student never saw; a PLC drives
   ``--parts`` handshakes over Modbus;
2. **review** — QA works the review queue through the web API (benchmarks/lifecycle_qa.py: logged in
   with the form, CSRF token, corrections and dispositions), at most ``--review-parts`` parts, with the
   generator's truth (the log's ``frame_id`` is the seed the camera rendered);
3. **export** — ``edge-inspect dataset export``; 4. **fine-tune** — ``python -m tools.distill train
   --init-from`` production on the export mixed with replay (the pilot's run E by default);
5. **bundle** — ``python -m tools.export onnx``; 6. **evaluation** — ``python -m tools.distill report
   --compare parent --new-kind chip`` (every check before and after on generated parts, and the new
   kind's recall); 7. **add** — ``edge-inspect model add --as candidate``; 8. **gate** — ``edge-inspect
   model gate candidate``; 9. **shadow** — ``edge-inspect model shadow start --parts N`` while the PLC
   keeps the line going at a pace that leaves the shadow gaps; 10. **promote** — ``edge-inspect model
   promote candidate`` when the gate passed (``--force-promote``: anyway, recorded as forced), then the
   line runs ``--after-parts`` parts on the new production.

Every phase's wall time; the line's own figures from the generator's truth (production before, both
versions side by side on the shadowed parts, the new production after); chip recall and every old
check before and after with the gate's tolerance; the gate's verdict; the shadow's agreement. Prints a
table and writes JSON (``--json``). The small variant (tests/distill/test_lifecycle_e2e.py) runs the
same chain with a few parts and training steps.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lifecycle_qa import Reviewer, line_figures, logged_parts  # noqa: E402
from plc_latency import Master, _free_port  # noqa: E402
from web_load import start_station  # noqa: E402

from edge_inspect.camera.sources import SyntheticSource  # noqa: E402
from edge_inspect.commands.bench import percentile  # noqa: E402
from edge_inspect.commands.gate_rules import JUDGED  # noqa: E402
from edge_inspect.config import GateConfig, load_config  # noqa: E402
from edge_inspect.http.auth import hash_password  # noqa: E402
from edge_inspect.modelstore import ModelStore  # noqa: E402

DEMO_STUDENT = ROOT / "models" / "demo-student"
RECIPE = {"number": 1, "name": "plate", "checks": [
    {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
    {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes", "min_margin": 0.2,
     "on_uncertain": "fail"}]}  # fmt: skip
# tools.distill report's figures → the gate's figure whose tolerance applies (precision, recall: shown only)
REPORT_TO_GATE = {"micro F1": "f1", "count exact": "count_exact", "yes/no accuracy": "accuracy",
                  "false-call rate": "false_call_rate", "escape rate": "escape_rate",
                  "good parts rejected": "good_part_reject_rate", "bad parts passed": "bad_part_pass_rate"}  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run(*cmd: str, ok: tuple[int, ...] = (0,), log: Path | None = None) -> subprocess.CompletedProcess:
    """A command of this checkout; its output is appended to ``log``; exits outside ``ok`` raise."""
    done = subprocess.run([sys.executable, *cmd], env=env(), capture_output=True, text=True, cwd=ROOT)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd[:4])} …: exit {done.returncode}\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return run("-m", "edge_inspect.cli", *args, **kw)


class Plc:
    """The line's PLC: one trigger handshake per part on the default server map (Modbus TCP)."""

    def __init__(self, port: int):
        self.m, self.trigger_id = Master(port), 0

    def _wait(self, address: int, value: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.m.bit(address) != value:
            if time.monotonic() > deadline:
                raise RuntimeError(f"discrete input {address} did not become {value} within {timeout:.0f} s")
            time.sleep(0.005)

    def part(self) -> float:
        """One part: trigger → results_valid in ms."""
        self.trigger_id = self.trigger_id % 65535 + 1
        self._wait(1, 1)  # ready
        self.m.call(struct.pack(">BHHB", 16, 0, 2, 4) + struct.pack(">HH", self.trigger_id, 1))
        t0 = time.perf_counter()
        self.m.coil(0, True)
        self._wait(3, 1)  # results_valid
        ms = (time.perf_counter() - t0) * 1000
        self.m.coil(0, False)
        self.m.coil(1, True)  # results_ack
        self._wait(3, 0)
        self.m.coil(1, False)
        return ms


class Phases:
    """Each phase's wall time and the machine's load when it began and ended."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[dict[str, Any]]:
        row: dict[str, Any] = {"phase": name, "load_before": [round(v, 2) for v in os.getloadavg()]}
        print(f"-- {name} (load {row['load_before'][0]})", flush=True)
        t0 = time.perf_counter()
        yield row
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["load_after"] = [round(v, 2) for v in os.getloadavg()]
        self.rows.append(row)
        print(f"   {name}: {row['seconds']} s", flush=True)


def write_station(folder: Path, args: argparse.Namespace, plc_port: int, web_port: int, password: str) -> Path:
    import yaml

    synthetic: dict[str, Any] = {"seed": args.camera_seed, "width": 320, "height": 240, "defect_kinds": args.line_kinds}
    if args.defect_rate is not None:
        synthetic["defect_rate"] = args.defect_rate
    gate: dict[str, Any] = {k: v for k, v in (("parts", args.gate_parts), ("shift_parts", args.shift_parts),
                            ("latency_parts", args.latency_parts), ("latency_repeats", args.latency_repeats))
                            if v is not None}  # fmt: skip
    config = {
        "station": {"name": "e2e-line"},
        "camera": {"source": "synthetic", "synthetic": synthetic},
        "model": {"bundle": "production", "providers": "cpu", "max_new_tokens": 96, "threads": args.threads,
                  "gate": gate, "shadow": {"threads": args.threads}},
        "recipes": [RECIPE],
        "triggers": {"plc": True, "recipe": 1},
        "plc": {"mode": "server", "transport": "tcp", "host": "127.0.0.1", "port": plc_port, "timeout_s": 0},
        "storage": {"dir": str(folder / "data"), "save_pass_every": 10},
        # every FAIL waits in the queue anyway; these add the passes and the close calls (caps above the run's)
        "review_sampling": {"uncertain": True, "low_margin": 0.3, "count_edge": 1, "every_nth_pass": 3,
                            "per_hour": 1000, "per_day": 5000},
        "web": {"enabled": True, "host": "127.0.0.1", "port": web_port, "open_view": True,
                "users": [{"name": "qa", "role": "qa", "password_hash": hash_password(password)}]},
    }  # fmt: skip
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def api(web_port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=30) as r:
        return json.loads(r.read())


def newest_id(web_port: int) -> int:
    items = api(web_port, "/api/inspections?per_page=1")["items"]
    return items[0]["id"] if items else 0


def drive(plc_port: int, parts: int, interval_s: float = 0.0, until=None) -> list[float]:
    """``parts`` handshakes (or until ``until()`` is true), one every ``interval_s`` (0: back to back)."""
    plc, cycles = Plc(plc_port), []
    next_at = time.perf_counter()
    for _ in range(parts):
        if until is not None and until():
            break
        time.sleep(max(0.0, next_at - time.perf_counter()))
        next_at = time.perf_counter() + interval_s
        cycles.append(plc.part())
    plc.m.sock.close()
    return cycles


def old_checks(report: dict[str, Any], gate: GateConfig) -> list[dict[str, Any]]:
    """tools.distill report's before/after rows, each with the gate's tolerance for that figure."""
    rows = []
    for r in (report.get("before_after") or {}).get("rows", []):
        judged = JUDGED.get(REPORT_TO_GATE.get(r["figure"], ""))
        tolerance = getattr(gate, judged[1]) if judged else None
        change = r["change"] if r["change"] == r["change"] else None
        ok = None
        if judged and change is not None:
            ok = (-change if judged[0] == "drop" else change) <= tolerance + 1e-12
        rows.append({**{k: (v if v == v else None) for k, v in r.items() if k != "worse"},
                     "tolerance": tolerance, "worse_when": judged[0] if judged else None, "ok": ok})  # fmt: skip
    return rows


def lifecycle(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work or tempfile.mkdtemp(prefix="lifecycle-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    plc_port, web_port, password = _free_port(), _free_port(), secrets.token_urlsafe(12)
    config = write_station(work, args, plc_port, web_port, password)
    cli("model", "add", str(args.production), "--as", "production", "--config", str(config), "--user", "e2e", log=log)
    station_cfg, _ = load_config(config)
    recipe = station_cfg.recipes[0]
    synthetic = station_cfg.camera.synthetic
    camera = SyntheticSource(synthetic.seed, synthetic.width, synthetic.height, synthetic.defect_rate,
                             synthetic.defect_kinds)  # fmt: skip
    kind = args.new_kind
    db = work / "data" / "inspections.db"
    phase = Phases()
    out: dict[str, Any] = {"work": str(work), "settings": {k: v for k, v in vars(args).items()}, "cpus": os.cpu_count()}
    store = ModelStore.of_storage(work / "data")
    parent = store.find("production").id
    station = None
    try:
        with phase("station start"):
            station, _ = start_station(config)
        with phase("line (production)") as row:
            cycles = drive(plc_port, args.parts)
            last = newest_id(web_port)
            row["parts"] = len(cycles)
            row["cycle_p50_ms"] = round(percentile(cycles, 0.5), 1)
        out["line_before"] = line_figures(logged_parts(db, 1, last), camera, recipe, kind)
        with phase("review (QA through the web API)") as row:
            review = Reviewer(f"http://127.0.0.1:{web_port}", "qa", password, camera, recipe).review(args.review_parts)
            row["parts"] = review.parts
        out["review"] = {k: v for k, v in vars(review).items() if k not in ("reviewed_ids", "corrected")}
        out["line_reviewed"] = line_figures(
            [p for p in logged_parts(db, 1, last) if p["id"] in set(review.reviewed_ids)], camera, recipe, kind
        )
        export = work / "reviewed"
        with phase("dataset export") as row:
            row["output"] = cli("dataset", "export", str(export), "--config", str(config), log=log).stdout.strip()
        records = [json.loads(line) for f in ("train.jsonl", "holdout.jsonl") for line in open(export / f)]
        out["export"] = {
            "records": len(records), "holdout": sum(1 for _ in open(export / "holdout.jsonl")),
            "corrected_records": sum(r["source"]["corrected"] for r in records),
            "inspections": len({r["source"]["inspection"] for r in records}),
            "surface_points": sum(len(r["points"]) for r in records if r["task"] == "surface"),
        }  # fmt: skip
        run_dir, bundle = work / "ft", work / "ft" / "bundle"
        with phase("fine-tune"):
            run("-m", "tools.distill", "train", "--init-from", str(args.production), "--data", str(export),
                "--out", str(run_dir), "--shape", args.shape, "--steps", str(args.train_steps),
                "--batch", str(args.batch), "--lr", str(args.lr), "--warmup", str(args.warmup),
                "--replay-share", str(args.replay_share), "--corrected-weight", str(args.corrected_weight),
                "--grounding", "0", "--threads", str(args.threads), "--workers", "0",
                "--eval-parts", str(args.train_eval_parts), "--save-every", str(args.train_steps),
                "--eval-every", str(10 * args.train_steps + 1000),
                log=log)  # fmt: skip
        losses = [json.loads(line) for line in open(run_dir / "log.jsonl") if '"loss"' in line]
        lineage = json.loads((run_dir / "lineage.json").read_text())
        out["fine_tune"] = {
            "steps": losses[-1]["step"] if losses else 0,
            "drawn": lineage.get("drawn"),
            "cpu_minutes": losses[-1].get("cpu_minutes") if losses else None,
        }
        with phase("bundle export (ONNX)"):
            run(
                "-m", "tools.export", "onnx", "--checkpoint", str(run_dir / "checkpoint"), "--out", str(bundle), log=log
            )
        with phase("evaluation (report, parent and candidate)"):
            first = args.eval_first_seed
            run("-m", "tools.distill", "report", "--run", str(run_dir), "--bundle", str(bundle),
                "--seeds", f"{first}:{first + args.eval_parts}", "--compare", "parent", "--new-kind", kind,
                "--new-kind-seeds", f"{args.new_kind_first_seed}:{args.new_kind_first_seed + args.new_kind_parts}",
                log=log)  # fmt: skip
        report = json.loads((bundle / "report.json").read_text())
        out["new_kind"] = report["new_kind"]
        out["old_checks"] = old_checks(report, station_cfg.model.gate)
        with phase("model add (candidate)"):
            cli("model", "add", str(bundle), "--as", "candidate", "--config", str(config), "--user", "e2e", log=log)
        candidate = store.find("candidate")
        with phase("gate") as row:
            gated = cli("model", "gate", "candidate", "--config", str(config), "--threads", str(args.threads),
                        "--user", "e2e", ok=(0, 1), log=log)  # fmt: skip
            row["exit"] = gated.returncode
        gate = store.find(candidate.id).info.get("gate") or {}
        out["gate"] = {
            "passed": gate.get("passed"), "problems": gate.get("problems"), "seconds": gate.get("seconds"),
            "corrected": {k: v for k, v in (gate.get("corrected") or {}).items() if k != "items"},
            "costs": gate.get("costs"), "latency_ms": gate.get("latency_ms"),
            "suites": [{"suite": s["suite"], "records": s.get("records"), "parts": s.get("parts"),
                        "rows_judged": sum(r["ok"] is not None for r in s["rows"]),
                        "rows_failed": sum(r["ok"] is False for r in s["rows"])} for s in gate.get("suites", [])],
        }  # fmt: skip
        with phase("shadow") as row:
            first_id = newest_id(web_port) + 1
            cli("model", "shadow", "start", "candidate", "--parts", str(args.shadow_parts), "--hours",
                str(args.shadow_hours), "--config", str(config), "--user", "e2e", log=log)  # fmt: skip
            deadline = time.time() + 300
            while api(web_port, "/api/status")["shadow"].get("state") != "running":
                if time.time() > deadline:
                    raise RuntimeError(f"the shadow did not start: {api(web_port, '/api/status')['shadow']}")
                time.sleep(0.5)
            interval = args.shadow_interval_ms / 1000 or 3 * out_cycle(phase) / 1000

            def ended() -> bool:
                return api(web_port, "/api/status")["shadow"].get("state") != "running"

            cycles = drive(plc_port, args.shadow_max_parts, interval, until=ended)
            if not ended():
                cli("model", "shadow", "stop", "--config", str(config), "--user", "e2e", log=log)
            time.sleep(1.0)  # the run's last verdict and its end written
            shadow = json.loads(cli("model", "shadow", "status", "--config", str(config), "--json").stdout)["run"]
            row.update(line_parts=len(cycles), interval_ms=round(interval * 1000), shadowed=shadow["shadowed"])
        both = logged_parts(db, first_id, newest_id(web_port), shadow_version=candidate.id)
        out["shadow"] = {
            **{k: shadow[k] for k in ("shadowed", "skipped_line", "skipped_shadow", "disagreements", "agreement",
                                      "verdict_agreement", "end_reason", "checks", "cost")},
            "line_parts": len(cycles), "interval_ms": round(interval * 1000),
            "production_on_shadowed": line_figures(both, camera, recipe, kind),
            "candidate_on_shadowed": line_figures(both, camera, recipe, kind, which="shadow"),
        }  # fmt: skip
        promote = bool(gate.get("passed")) or args.force_promote
        out["promoted"] = {"done": False, "forced": promote and not gate.get("passed")}
        if promote:
            with phase("promote (and the station's swap)"):
                cli("model", "promote", "candidate", "--config", str(config), "--user", "e2e",
                    *(["--force"] if not gate.get("passed") else []), log=log)  # fmt: skip
                deadline = time.time() + 300
                while not candidate.id.startswith(api(web_port, "/api/status")["model"]):
                    if time.time() > deadline:
                        raise RuntimeError("the station did not swap the promoted version in")
                    time.sleep(0.5)
            out["promoted"]["done"] = True
            with phase("line (new production)") as row:
                first_id = newest_id(web_port) + 1
                cycles = drive(plc_port, args.after_parts)
                row["parts"] = len(cycles)
            out["line_after"] = line_figures(logged_parts(db, first_id, newest_id(web_port)), camera, recipe, kind)
            out["promoted"]["running_after"] = api(web_port, "/api/status")["model"]  # no automatic rollback
        state = store.state()
        out["store"] = {
            "aliases": state["aliases"], "parent": parent,
            "versions": {v.id: {"parent": v.info.get("parent"), "added_by": v.info.get("added_by")}
                         for v in store.versions()},
            "history": [{k: h.get(k) for k in ("action", "alias", "version", "previous", "gate", "forced")}
                        for h in state["history"]],
        }  # fmt: skip
        out["candidate"] = candidate.id
    finally:
        if station is not None:
            station.terminate()
            station.wait(60)
    out["phases"] = phase.rows
    out["load_end"] = os.getloadavg()
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return plain(out)


def plain(value: Any) -> Any:
    """JSON-ready: NaN (a figure with nothing to measure it on) as None."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def out_cycle(phase: Phases) -> float:
    line = next(r for r in phase.rows if r["phase"].startswith("line"))
    return float(line["cycle_p50_ms"])


def _v(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def print_table(r: dict[str, Any], kind: str) -> None:
    print("\n| phase | wall time | load (1 min) at start | detail |\n|---|---|---|---|")
    for p in r["phases"]:
        detail = ", ".join(
            f"{k} {v}" for k, v in p.items() if k not in ("phase", "seconds", "load_before", "load_after")
        )
        print(f"| {p['phase']} | {p['seconds']:.0f} s | {p['load_before'][0]} | {detail} |")
    print(f"\nnew kind `{kind}` on generated parts (tools.distill report --new-kind):")
    nk = r["new_kind"]
    print("| figure | production (parent) | candidate |\n|---|---|---|")
    for key in ("recall", "micro_precision", "micro_f1", "false_call_rate", "escape_rate"):
        print(f"| {key} | {_v(nk['before'][key])} | {_v(nk['after'][key])} |")
    print("\nthe line, against the generator's truth:")
    cols = [("production, line before", r.get("line_before")),
            ("production, shadowed parts", r["shadow"]["production_on_shadowed"]),
            ("candidate, shadowed parts", r["shadow"]["candidate_on_shadowed"]),
            ("new production, line after", r.get("line_after"))]  # fmt: skip
    cols = [(n, c) for n, c in cols if c]
    print("| figure | " + " | ".join(n for n, _ in cols) + " |\n|---|" + "---|" * len(cols))
    for key in (
        "parts",
        f"{kind}_objects",
        f"{kind}_recall",
        "false_call_rate",
        "bad_parts_passed",
        "good_parts_rejected",
    ):
        print(f"| {key} | " + " | ".join(_v(c[key]) for _, c in cols) + " |")
    print("\nevery old check on generated parts, production before and candidate after, the gate's tolerance:")
    print("| check | figure | before | after | change | tolerance | ok |\n|---|---|---|---|---|---|---|")
    for o in r["old_checks"]:
        print(f"| {o['check']} | {o['figure']} | {_v(o['before'])} | {_v(o['after'])} | {_v(o['change'])} | "
              f"{_v(o['tolerance'])} | {'' if o['ok'] is None else 'yes' if o['ok'] else 'NO'} |")  # fmt: skip
    g, s, rv, ex = r["gate"], r["shadow"], r["review"], r["export"]
    print(f"\nreview: {rv['parts']} parts of a queue of {rv['queue']} ({rv['reasons']}), dispositions "
          f"{rv['dispositions']}, {rv['corrected_checks']} checks corrected (+{rv['points_added']} / "
          f"-{rv['points_removed']} points), {rv['requests']} HTTP requests")  # fmt: skip
    print(f"export: {ex['records']} records ({ex['holdout']} holdout, {ex['corrected_records']} corrected)")
    print(f"gate: {'passed' if g['passed'] else 'FAILED'}; " + "; ".join(g["problems"] or []))
    print(f"shadow: {s['shadowed']} shadowed of {s['line_parts']} line parts (every {s['interval_ms']} ms), "
          f"agreement {_v(s['agreement'])}, {s['disagreements']} disagreements, ended: {s['end_reason']}")  # fmt: skip
    promoted = r["promoted"]
    print(f"promoted: {promoted['done']}{' (forced)' if promoted['forced'] else ''}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--production", type=Path, default=DEMO_STUDENT, help="the production bundle (default: the demo student)")
    a("--shape", default="demo", choices=["demo", "test"], help="its student shape, for the fine-tune")
    a("--line-kinds", type=lambda s: s.split(","), default=["chip"], help="the line's surface defect kinds")
    a("--new-kind", default="chip", help="the kind whose recall is measured")
    a("--defect-rate", type=float, default=None, help="share of defective parts (default: the generator's mix)")
    a("--camera-seed", type=int, default=5_000_000, help="the synthetic camera's first seed")
    a("--parts", type=int, default=150, help="line parts before review")
    a("--review-parts", type=int, default=100, help="at most this many parts reviewed")
    a("--train-steps", type=int, default=300)
    a("--batch", type=int, default=16)
    a("--lr", type=float, default=1e-4)
    a("--warmup", type=int, default=20)
    a("--train-eval-parts", type=int, default=40, help="the fine-tune's validation parts at its last step")
    a("--replay-share", type=float, default=0.6)
    a("--corrected-weight", type=float, default=3.0)
    a("--eval-parts", type=int, default=200, help="generated parts for every check before and after")
    a("--eval-first-seed", type=int, default=900_000)
    a("--new-kind-parts", type=int, default=150, help="parts whose defects are all the new kind")
    a("--new-kind-first-seed", type=int, default=920_000)
    a("--gate-parts", type=int, default=None, help="model.gate.parts (default: the station's, 100)")
    a("--shift-parts", type=int, default=None, help="model.gate.shift_parts (default: the station's, 50)")
    a("--latency-parts", type=int, default=None, help="model.gate.latency_parts (default 30)")
    a("--latency-repeats", type=int, default=None, help="model.gate.latency_repeats (default 3)")
    a("--shadow-parts", type=int, default=200, help="the shadow run's parts bound")
    a("--shadow-hours", type=float, default=8.0, help="the shadow run's hours bound")
    a("--shadow-interval-ms", type=float, default=0.0, help="trigger period while shadowing (0: 3 x the line's cycle)")
    a("--shadow-max-parts", type=int, default=0, help="line parts at most while shadowing (0: 10 x --shadow-parts)")
    a("--after-parts", type=int, default=150, help="line parts on the new production")
    a("--force-promote", action="store_true", help="promote (audited as forced) even when the gate failed")
    a("--threads", type=int, default=1, help="model threads: station, shadow, gate, training")
    a("--work", help="working folder (kept; default: a temporary one, removed unless --keep)")
    a("--keep", action="store_true", help="keep the temporary working folder")
    a("--json", help="write the results here")
    args = p.parse_args(argv)
    args.shadow_max_parts = args.shadow_max_parts or 10 * args.shadow_parts
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = lifecycle(args)
    print_table(result, args.new_kind)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
