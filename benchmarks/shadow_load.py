"""Production's timing with and without a shadow on the line:
``python benchmarks/shadow_load.py [--seconds 20] [--rounds 2] [--relaxed-ms 1000] [--json out.json]``.

Starts the station as a separate process (``edge-inspect run``: the demo student as the model store's
production, a copy of it under another version id as the candidate, the synthetic camera, the
Modbus server and the web on free loopback ports). A PLC process drives handshakes at a fixed trigger
interval and times trigger → `results_valid`, while a second connection reads 10 input registers
every ``--period-ms`` and times each answer. Phases of ``--seconds`` alternate without and with a
shadow (``edge-inspect model shadow start`` / ``stop``, the station's own path), ``--rounds`` times,
at two trigger intervals: ``tight`` (1.15 × the back-to-back cycle p50 measured first, near the
station's cycle) and ``relaxed`` (``--relaxed-ms``), so a drift of the machine's load hits both kinds
alike. Per phase: trigger → `results_valid` p50/p99, Modbus read p99, parts shadowed and skipped;
the table pools each kind's phases, and the ratios (with / without) are the median over rounds of
the two phases that ran back to back.

Prints a table and writes JSON. docs/performance.md, "Shadow on the line", has the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plc_latency import Master, _free_port  # noqa: E402
from web_load import _stats, start_station  # noqa: E402
from web_load import write_station as write_web_station  # noqa: E402

from edge_inspect.commands.bench import percentile  # noqa: E402

DEMO_STUDENT = ROOT / "models" / "demo-student"


def _handshake(m: Master, trigger_id: int, stop: threading.Event) -> float:
    """One handshake on the default server map; returns trigger → results_valid in ms."""
    import struct

    m.wait(1, 1, stop)  # ready
    m.call(struct.pack(">BHHB", 16, 0, 2, 4) + struct.pack(">HH", trigger_id, 1))
    t0 = time.perf_counter()
    m.coil(0, True)
    m.wait(3, 1, stop)  # results_valid
    valid_ms = (time.perf_counter() - t0) * 1000
    m.call(struct.pack(">BHH", 4, 0, 5))
    m.coil(0, False)
    m.coil(1, True)
    m.wait(3, 0, stop)
    m.coil(1, False)
    return valid_ms


def plc_phase(port: int, seconds: float, interval_s: float, period_s: float, queue) -> None:
    """Handshakes every ``interval_s`` (0: back to back) and a timed 10-register read every ``period_s``."""
    stop, reads, valid = threading.Event(), [], []

    def probe() -> None:
        m = Master(port)
        while not stop.is_set():
            t0 = time.perf_counter()
            m.call(b"\x04\x00\x00\x00\x0a")
            reads.append((time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, period_s - (time.perf_counter() - t0)))

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    m, trigger_id = Master(port), int(time.time()) % 30000
    end = time.perf_counter() + seconds
    next_at = time.perf_counter()
    while time.perf_counter() < end:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        next_at = max(next_at + interval_s, time.perf_counter()) if interval_s else time.perf_counter()
        trigger_id = trigger_id % 65535 + 1
        valid.append(_handshake(m, trigger_id, stop))
    stop.set()
    prober.join(10)
    queue.put({"reads_ms": reads, "valid_ms": valid})


def run_plc(port: int, seconds: float, interval_s: float, period_s: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=plc_phase, args=(port, seconds, interval_s, period_s, queue))
    proc.start()
    result = queue.get(timeout=seconds + 120)
    proc.join(30)
    return result


def status(web_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/status", timeout=10) as r:
        return json.loads(r.read())


def cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-m", "edge_inspect.cli", *args], check=True, env=env, capture_output=True)


def shadow_state(web_port: int) -> dict:
    return status(web_port).get("shadow") or {}


def wait_state(web_port: int, want: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = shadow_state(web_port)
        if (s.get("state") == "running") == (want == "running"):
            return s
        time.sleep(0.2)
    raise RuntimeError(f"the shadow did not become {want} within {timeout} s: {shadow_state(web_port)}")


def build(folder: Path, plc_port: int, web_port: int) -> Path:
    config = write_web_station(folder, plc_port, web_port, "production")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    candidate = Path(shutil.copytree(DEMO_STUDENT, folder / "candidate"))
    manifest = json.loads((candidate / "manifest.json").read_text())
    manifest["created"] += " shadow benchmark"  # the same model under another version id: the same cost
    (candidate / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for bundle, alias in ((DEMO_STUDENT, "production"), (candidate, "candidate")):
        subprocess.run(
            [sys.executable, "-m", "edge_inspect.cli", "model", "add", str(bundle), "--as", alias, "--config", str(config)],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
    return config


def phase_row(name: str, interval_ms: float, shadow: bool, result: dict, before: dict, after: dict) -> dict:
    valid, reads = result["valid_ms"], result["reads_ms"]
    shadowed = skipped = 0
    if shadow:
        shadowed = after.get("shadowed", 0) - before.get("shadowed", 0)
        skipped = after.get("skipped", 0) - before.get("skipped", 0)
    return {
        "interval": name, "interval_ms": round(interval_ms, 1), "shadow": shadow, "parts": len(valid),
        "valid_p50_ms": round(percentile(valid, 0.5), 1), "valid_p99_ms": round(percentile(valid, 0.99), 1),
        "read_p50_ms": round(percentile(reads, 0.5), 2), "read_p99_ms": round(percentile(reads, 0.99), 2),
        "reads": len(reads), "shadowed": shadowed, "skipped": skipped,
    }  # fmt: skip


def run(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="shadow-load-"))
    plc_port, web_port = _free_port(), _free_port()
    config = build(folder, plc_port, web_port)
    station, start_s = start_station(config)
    rows: list[dict] = []
    pooled: dict[tuple[str, bool], dict[str, list[float]]] = {}
    try:
        warm = run_plc(plc_port, args.warmup, 0.0, args.period_ms / 1000)
        cycle_p50 = percentile(warm["valid_ms"], 0.5)
        intervals = {"tight": cycle_p50 * 1.15, "relaxed": args.relaxed_ms}
        for rnd in range(args.rounds):
            for name, interval_ms in intervals.items():
                for shadow in (False, True) if rnd % 2 == 0 else (True, False):
                    if shadow:
                        cli("model", "shadow", "start", "--parts", "0", "--hours", "100", "--config", str(config))
                        before = wait_state(web_port, "running")
                    else:
                        before = {}
                    result = run_plc(plc_port, args.seconds, interval_ms / 1000, args.period_ms / 1000)
                    after = shadow_state(web_port) if shadow else {}
                    if shadow:
                        cli("model", "shadow", "stop", "--config", str(config))
                        wait_state(web_port, "off")
                    row = phase_row(name, interval_ms, shadow, result, before, after)
                    pool = pooled.setdefault((name, shadow), {"valid_ms": [], "reads_ms": []})
                    pool["valid_ms"] += result["valid_ms"]
                    pool["reads_ms"] += result["reads_ms"]
                    row["round"] = rnd
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        last = shadow_state(web_port)
    finally:
        station.terminate()
        station.wait(30)
    summary = []
    for name in ("tight", "relaxed"):
        for shadow in (False, True):
            mine = [r for r in rows if r["interval"] == name and r["shadow"] == shadow]
            pool = pooled[(name, shadow)]
            summary.append({
                "interval": name, "interval_ms": mine[0]["interval_ms"], "shadow": shadow,
                "parts": sum(r["parts"] for r in mine),
                "valid_p50_ms": round(percentile(pool["valid_ms"], 0.5), 1),
                "valid_p99_ms": round(percentile(pool["valid_ms"], 0.99), 1),
                "read_p99_ms": round(percentile(pool["reads_ms"], 0.99), 2),
                "shadowed": sum(r["shadowed"] for r in mine), "skipped": sum(r["skipped"] for r in mine),
            })  # fmt: skip
    ratios = {}  # with / without, per round (the two phases of a round ran back to back), then the median
    for name in ("tight", "relaxed"):
        for key in ("valid_p50_ms", "valid_p99_ms", "read_p99_ms"):
            per_round = []
            for rnd in range(args.rounds):
                on = [r[key] for r in rows if r["interval"] == name and r["round"] == rnd and r["shadow"]]
                off = [r[key] for r in rows if r["interval"] == name and r["round"] == rnd and not r["shadow"]]
                if on and off and off[0]:
                    per_round.append(on[0] / off[0])
            ratios[f"{name}:{key}"] = round(sorted(per_round)[len(per_round) // 2], 2) if per_round else None
    return {
        "station_start_s": round(start_s, 1), "cycle_back_to_back": _stats(warm["valid_ms"]),
        "seconds_per_phase": args.seconds, "rounds": args.rounds, "period_ms": args.period_ms,
        "load_before": os.getloadavg(), "phases": rows, "summary": summary, "ratios_median_of_rounds": ratios, "shadow_last": last.get("last"),
        "cpus": os.cpu_count(),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (without, with) per interval")
    parser.add_argument("--warmup", type=float, default=10.0, help="back-to-back seconds to measure the cycle")
    parser.add_argument("--relaxed-ms", type=float, default=1000.0, help="the relaxed trigger interval")
    parser.add_argument("--period-ms", type=float, default=10.0, help="time between two probe reads")
    parser.add_argument("--json", default="work/shadow_load.json")
    args = parser.parse_args()
    report = run(args)
    print(f"back-to-back cycle p50 {report['cycle_back_to_back'].get('p50_ms')} ms; {report['cpus']} CPUs")
    print(
        f"{'interval':>16} {'shadow':>6} {'parts':>6} {'valid p50':>10} {'valid p99':>10} {'read p99':>9} {'shadowed':>9} {'skipped':>8}"
    )
    for r in report["summary"]:
        label = f"{r['interval']} {r['interval_ms']:.0f} ms"
        print(
            f"{label:>16} {'on' if r['shadow'] else 'off':>6} {r['parts']:>6} {r['valid_p50_ms']:>10} "
            f"{r['valid_p99_ms']:>10} {r['read_p99_ms']:>9} {r['shadowed']:>9} {r['skipped']:>8}"
        )
    print(
        "with / without shadow, median over rounds: "
        + ", ".join(f"{k} {v}" for k, v in report["ratios_median_of_rounds"].items())
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
