"""The web HMI and QA review on a large log, while the station serves the PLC:
``python benchmarks/web_load.py [--rows 1000000] [--seconds 15] [--clients 5]``.

1. Builds a log of ``--rows`` inspections (checks and points in the demo recipe's proportions,
   dispositions and audit rows for some FAILs, spread over ``--days`` days up to now) by bulk
   insert through the schema of ``edge_inspect/logbook`` (its migrations create the tables). The
   built file is cached under ``--cache`` and copied for each run.
2. Starts the station on the copy as a separate process (``edge-inspect run``: the demo student,
   the synthetic camera, the Modbus server and the web on free loopback ports).
3. A PLC process reads 10 input registers every ``--period-ms`` and times each answer, in three
   phases: idle, inspecting (a second connection drives handshakes back to back), and inspecting
   with ``--clients`` HTTP clients loading /review, /api/charts, /api/status and the CSV export
   in turn (client 0 reads every export to the end; the others read the first piece and close).
   The server's RSS is sampled from /proc every 100 ms.

Prints a table and writes JSON (``--json``). Targets (docs/performance-web.md): Modbus p99 ≤ 20 ms
under load, /review p95 ≤ 300 ms, /api/charts p95 ≤ 500 ms, /api/status p95 ≤ 20 ms, CSV first
byte ≤ 300 ms with the server's memory flat.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plc_latency import Master, _drive, _free_port  # noqa: E402

from edge_inspect.commands.bench import percentile  # noqa: E402
from edge_inspect.logbook.schema import LATEST, migrate  # noqa: E402

CHECKS = (("surface", "point"), ("screws", "count"), ("label", "qa"))
TARGETS = {
    "modbus_p99_ms": 20,
    "review_p95_ms": 300,
    "charts_p95_ms": 500,
    "status_p95_ms": 20,
    "csv_first_byte_ms": 300,
}


# -- the log -------------------------------------------------------------------------------------
def build_log(path: Path, rows: int, days: float, seed: int = 13, end: float | None = None) -> dict:
    """A log of ``rows`` inspections over ``days`` days ending at ``end`` (now): 92 % PASS, 7 % FAIL
    (surface, screws or label), 1 % ERROR; 4 screw points per part, surface points on surface
    fails; 30 % of FAILs and 0.1 % of PASSes dispositioned, each with its audit row."""
    rng = random.Random(seed)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db)  # the tables and indexes of this release
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-200000")
    end = time.time() - 60 if end is None else end
    start = end - days * 86400
    step = (end - start) / rows
    t0 = time.perf_counter()
    counts = {"inspections": 0, "checks": 0, "points": 0, "dispositions": 0}
    batch = 20000
    insert_i = (
        "INSERT INTO inspections (id, result_id, ts, ts_unix, station, recipe, recipe_name, part_id, trigger, verdict, "
        "error, defect_count, failed_checks, grab_ms, preprocess_ms, vision_ms, prefill_ms, decode_ms, inspect_ms, "
        "cycle_ms, model_sha256, config_sha256, image_path, overlay_path) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    insert_c = (
        "INSERT INTO checks (inspection_id, idx, name, kind, status, reason, counted, answer, p_yes, margin, ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    from datetime import datetime, timezone

    for first in range(1, rows + 1, batch):
        ins, chk, pts, disp, aud = [], [], [], [], []
        for i in range(first, min(rows, first + batch - 1) + 1):
            ts_unix = start + (i - 1) * step + rng.random() * step * 0.5
            stamp = datetime.fromtimestamp(ts_unix, timezone.utc).isoformat(timespec="milliseconds")
            r = rng.random()
            verdict = "PASS" if r < 0.92 else "FAIL" if r < 0.99 else "ERROR"
            failing = rng.choices((0, 1, 2), (5, 3, 2))[0] if verdict == "FAIL" else None
            statuses = ["pass"] * 3
            if failing is not None:
                statuses[failing] = "fail"
            if verdict == "ERROR":
                statuses = ["error"] * 3
            screws = 4 if statuses[1] == "pass" else rng.choice((3, 5))
            surface = 0 if statuses[0] == "pass" else rng.randint(1, 3)
            mask = sum(1 << k for k, s in enumerate(statuses) if s != "pass")
            image = (
                f"images/{stamp[:10]}/{stamp[11:23].replace(':', '').replace('.', '_')}_{i % 65535}"
                if verdict != "PASS" or i % 20 == 0
                else None
            )
            ins.append(
                (
                    i,
                    i % 65535 + 1,
                    stamp,
                    ts_unix,
                    "demo-station",
                    1,
                    "plate",
                    f"P{i:08d}",
                    "plc",
                    verdict,
                    "model error" if verdict == "ERROR" else "",
                    surface + abs(screws - 4),
                    mask,
                    3.1,
                    1.2,
                    18.0,
                    9.5,
                    40.2,
                    72.0,
                    80.5,
                    "ab" * 32,
                    "cd" * 32,
                    image and image + ".jpg",
                    image and image + "_overlay.jpg",
                )
            )
            if verdict != "ERROR":
                chk.append(
                    (i, 0, "surface", "point", statuses[0], f"{surface} defect(s)", surface, None, None, None, 20.1)
                )
                chk.append((i, 1, "screws", "count", statuses[1], f"{screws} of 4", screws, None, None, None, 21.3))
                chk.append(
                    (
                        i,
                        2,
                        "label",
                        "qa",
                        statuses[2],
                        "yes" if statuses[2] == "pass" else "no",
                        None,
                        "yes" if statuses[2] == "pass" else "no",
                        0.9,
                        0.8,
                        6.2,
                    )
                )
                pts += [(i, 1, 0.2 + 0.15 * k, 0.3) for k in range(screws)]
                pts += [(i, 0, rng.random(), rng.random()) for _ in range(surface)]
            if (verdict == "FAIL" and rng.random() < 0.3) or (verdict == "PASS" and rng.random() < 0.001):
                d = (
                    ("confirmed_defect" if rng.random() < 0.8 else "false_reject")
                    if verdict == "FAIL"
                    else "missed_defect"
                )
                disp.append((i, d, "qa", "", stamp))
                aud.append((stamp, "qa", "disposition", i, json.dumps({"before": None, "after": {"disposition": d}})))
        db.execute("BEGIN")
        db.executemany(insert_i, ins)
        db.executemany(insert_c, chk)
        db.executemany("INSERT INTO points (inspection_id, check_idx, x, y) VALUES (?, ?, ?, ?)", pts)
        db.executemany(
            "INSERT INTO dispositions (inspection_id, disposition, reviewer, comment, ts) VALUES (?, ?, ?, ?, ?)", disp
        )
        db.executemany("INSERT INTO audit (ts, user, action, inspection_id, detail) VALUES (?, ?, ?, ?, ?)", aud)
        db.execute("COMMIT")
        for k, v in (("inspections", ins), ("checks", chk), ("points", pts), ("dispositions", disp)):
            counts[k] += len(v)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    return {
        **counts,
        "days": days,
        "schema": LATEST,
        "build_s": round(time.perf_counter() - t0, 1),
        "mb": round(path.stat().st_size / 1e6, 1),
        "end": end,
    }


def cached_log(cache: Path, rows: int, days: float) -> tuple[Path, dict]:
    """The built log for (rows, days), rebuilt when missing or older than a day."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"log-{rows}-{days:g}d.db"  # the station migrates its copy to the latest schema
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if time.time() - info["end"] < 86400:
            return path, info
    print(f"building {path} ({rows:,} inspections over {days:g} days) …", flush=True)
    info = build_log(path, rows, days)
    meta.write_text(json.dumps(info))
    return path, info


# -- the station -----------------------------------------------------------------------------------
def write_station(folder: Path, plc_port: int, web_port: int, bundle: str) -> Path:
    import yaml

    config = {
        "station": {"name": "demo-station"},
        "camera": {"source": "synthetic", "synthetic": {"seed": 1000, "width": 320, "height": 240}},
        "model": {"bundle": bundle, "providers": "cpu", "max_new_tokens": 96},
        "recipes": [{"number": 1, "name": "plate", "checks": [
            {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
            {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
            {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes",
             "min_margin": 0.2, "on_uncertain": "fail"}]}],
        "triggers": {"plc": True, "recipe": 1},
        "plc": {"mode": "server", "transport": "tcp", "host": "127.0.0.1", "port": plc_port, "timeout_s": 0},
        # retention over the whole built log: the start-up retention run must not delete it
        "storage": {"dir": str(folder / "data"), "save_pass_every": 10, "retention_days": 3650},
        "web": {"enabled": True, "host": "127.0.0.1", "port": web_port, "open_view": True},
    }  # fmt: skip
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_station(config: Path, timeout: float = 300) -> tuple[subprocess.Popen, float]:
    exe = Path(sys.executable).parent / "edge-inspect"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_inspect.cli"]
    # the station of this checkout, not the package the interpreter has installed (another checkout)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=config.parent,
        env=env,
    )  # fmt: skip
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the station exited:\n" + "".join(lines[-30:]))
        lines.append(line)
        if line.startswith("HMI on"):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc, time.perf_counter() - t0
    proc.kill()
    raise RuntimeError("the station did not start in time:\n" + "".join(lines[-30:]))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the PLC ---------------------------------------------------------------------------------------
def plc_process(port: int, period_s: float, drive, stop, queue) -> None:
    """Times a 10-register read every period until ``stop``; drives handshakes while ``drive`` is set."""
    m, probes, cycles = Master(port), [], []
    halt = threading.Event()
    driver = None
    while not stop.is_set():
        if drive.is_set() and driver is None:
            driver = threading.Thread(target=_drive, args=(port, halt, cycles), daemon=True)
            driver.start()
        t0 = time.perf_counter()
        m.call(b"\x04\x00\x00\x00\x0a")
        probes.append((time.monotonic(), (time.perf_counter() - t0) * 1000))
        time.sleep(max(0.0, period_s - (time.perf_counter() - t0)))
    halt.set()
    if driver is not None:
        driver.join(30)
    queue.put({"probes": probes, "cycles_ms": cycles})


# -- the HTTP clients --------------------------------------------------------------------------------
PATHS = (("review", "/review"), ("charts", "/api/charts"), ("status", "/api/status"), ("csv", "/api/inspections.csv"))


class Client(threading.Thread):
    def __init__(
        self,
        n: int,
        port: int,
        stop: threading.Event,
        full_export: bool,
        think_s: float = 0.0,
        keep_alive: bool = True,
        paths: tuple = PATHS,
    ):
        super().__init__(daemon=True)
        self.PATHS = paths
        self.n, self.port, self.stop, self.full_export, self.think_s = n, port, stop, full_export, think_s
        self.keep_alive = keep_alive
        self.times: dict[str, list[float]] = {name: [] for name, _ in self.PATHS}
        self.csv_full: list[dict] = []
        self.errors: list[str] = []

    def run(self) -> None:
        k = self.n  # clients start at different places in the cycle
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        while not self.stop.is_set():
            name, path = self.PATHS[k % len(self.PATHS)]
            k += 1
            if self.think_s:  # a person between two clicks (0: back to back)
                self.stop.wait(self.think_s * (0.5 + random.random()))
            if not self.keep_alive:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            try:
                t0 = time.perf_counter()
                conn.request("GET", path)
                resp = conn.getresponse()
                if name == "csv":
                    resp.read(1)
                    self.times[name].append((time.perf_counter() - t0) * 1000)
                    if self.full_export:
                        size = 1
                        while piece := resp.read(1 << 16):
                            size += len(piece)
                        self.csv_full.append(
                            {
                                "bytes": size,
                                "seconds": round(time.perf_counter() - t0, 2),
                                "start": t0,
                                "end": time.perf_counter(),
                            }
                        )
                    else:
                        resp.read(64 << 10)
                        conn.close()  # a user who cancels the download
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                    continue
                resp.read()
                if resp.status != 200:
                    self.errors.append(f"{path}: {resp.status}")
                self.times[name].append((time.perf_counter() - t0) * 1000)
            except (OSError, http.client.HTTPException) as err:
                self.errors.append(f"{path}: {err}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(max(values), 1),
    }


def run(args) -> dict:
    log_path, log_info = cached_log(Path(args.cache), args.rows, args.days)
    folder = Path(tempfile.mkdtemp(prefix="web-load-"))
    (folder / "data").mkdir()
    shutil.copyfile(log_path, folder / "data" / "inspections.db")
    plc_port, web_port = _free_port(), _free_port()
    config = write_station(folder, plc_port, web_port, args.bundle)
    station, start_s = start_station(config)
    report: dict = {
        "log": log_info,
        "station_start_s": round(start_s, 1),
        "clients": args.clients,
        "think_ms": args.think_ms,
        "keep_alive": not args.new_connections,
        "seconds_per_phase": args.seconds,
        "period_ms": args.period_ms,
        "load_before": os.getloadavg(),
    }
    ctx = mp.get_context("spawn")
    drive, stop, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    plc = ctx.Process(target=plc_process, args=(plc_port, args.period_ms / 1000, drive, stop, queue))
    rss: list[tuple[float, float]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rss.append((time.perf_counter(), rss_mb(station.pid)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        plc.start()
        time.sleep(1.0)
        windows = {"idle": [time.monotonic()]}
        time.sleep(args.seconds)
        windows["idle"].append(time.monotonic())
        drive.set()
        time.sleep(2.0)  # let the inspections get going
        windows["inspecting"] = [time.monotonic()]
        time.sleep(args.seconds)
        windows["inspecting"].append(time.monotonic())
        sampler.start()
        halt = threading.Event()
        paths = tuple(p for p in PATHS if p[0] in args.paths.split(","))
        exporting = any(name == "csv" for name, _ in paths)
        clients = [
            Client(
                n,
                web_port,
                halt,
                full_export=(n == 0),
                think_s=args.think_ms / 1000,
                keep_alive=not args.new_connections,
                paths=paths,
            )
            for n in range(args.clients)
        ]
        windows["inspecting + web"] = [time.monotonic()]
        for c in clients:
            c.start()
        t_end = time.perf_counter() + args.seconds
        while time.perf_counter() < t_end or (
            exporting and not clients[0].csv_full and time.perf_counter() < t_end + 600
        ):
            time.sleep(0.2)
        windows["inspecting + web"].append(time.monotonic())
        halt.set()
        for c in clients:
            c.join(60)
        sampling.set()
        stop.set()
        result = queue.get(timeout=120)
        plc.join(30)
    finally:
        stop.set()
        sampling.set()
        station.terminate()
        try:
            station.wait(60)
        except subprocess.TimeoutExpired:
            station.kill()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report["load_after"] = os.getloadavg()
    report["modbus"] = [
        {"phase": name, **_stats([ms for t, ms in result["probes"] if lo <= t < hi])}
        for name, (lo, hi) in windows.items()
    ]
    cycles = result["cycles_ms"]
    report["inspections"] = len(cycles)
    report["cycle_ms_p50"] = round(percentile(cycles, 0.5), 1) if cycles else None
    report["http"] = {name: _stats([v for c in clients for v in c.times[name]]) for name, _ in paths}
    report["http_errors"] = [e for c in clients for e in c.errors][:20]
    exports = clients[0].csv_full
    report["csv_full"] = exports
    if exports:
        first = exports[0]
        during = [mb for t, mb in rss if first["start"] <= t <= first["end"]]
        before = [mb for t, mb in rss if t <= first["start"]] or during[:1]
        report["rss_mb"] = {
            "at_start": round(before[-1], 1),
            "max_during_export": round(max(during), 1),
            "samples": len(during),
        }
    report["rss_mb_all"] = (
        {"min": round(min(mb for _, mb in rss), 1), "max": round(max(mb for _, mb in rss), 1)} if rss else {}
    )
    report["rss_timeline"] = [(round(t - rss[0][0], 1), round(mb, 1)) for t, mb in rss[::10]] if rss else []
    return report


def print_table(r: dict) -> None:
    log = r["log"]
    print(
        f"log: {log['inspections']:,} inspections, {log['checks']:,} checks, {log['points']:,} points, "
        f"{log['dispositions']:,} dispositions over {log['days']:g} days ({log['mb']} MB); "
        f"station up in {r['station_start_s']} s"
    )
    print(f"{'Modbus read':22} {'reads':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for m in r["modbus"]:
        print(
            f"{m['phase']:22} {m['n']:>6} {m.get('p50_ms', '-'):>8} {m.get('p99_ms', '-'):>8} {m.get('max_ms', '-'):>8}"
        )
    print(
        f"HTTP: {r['clients']} clients, {'keep-alive' if r.get('keep_alive', True) else 'a connection per request'}, "
        f"think time {r.get('think_ms', 0):g} ms"
    )
    print(f"{'HTTP (' + str(r['clients']) + ' clients)':22} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, s in r["http"].items():
        label = "csv first byte" if name == "csv" else "/review" if name == "review" else f"/api/{name}"
        print(f"{label:22} {s['n']:>6} {s.get('p50_ms', '-'):>8} {s.get('p95_ms', '-'):>8} {s.get('max_ms', '-'):>8}")
    for e in r["csv_full"]:
        print(f"full CSV export: {e['bytes'] / 1e6:.1f} MB in {e['seconds']} s")
    if "rss_mb" in r:
        m = r["rss_mb"]
        print(
            f"server RSS during the first full export: {m['at_start']} MB at start, max {m['max_during_export']} MB "
            f"({m['samples']} samples)"
        )
    print(
        f"{r['inspections']} inspections driven, cycle p50 {r['cycle_ms_p50']} ms; load average "
        f"{' '.join(f'{x:.2f}' for x in r['load_before'])} before, {' '.join(f'{x:.2f}' for x in r['load_after'])} after"
    )
    if r["http_errors"]:
        print("errors:", *r["http_errors"], sep="\n  ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="inspections in the built log")
    parser.add_argument("--days", type=float, default=30.0, help="the log spans this many days up to now")
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="length of each phase (the web phase lasts at least until one full CSV export is read)",
    )
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause of each client between requests (uniform 0.5x-1.5x; 0 = back to back)",
    )
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="a new TCP connection per request (default: keep-alive, as browsers do)",
    )
    parser.add_argument("--paths", default="review,charts,status,csv", help="what the clients load, in turn")
    parser.add_argument("--period-ms", type=float, default=10.0, help="time between two Modbus probe reads")
    parser.add_argument("--bundle", default=str(ROOT / "models" / "demo-student"))
    parser.add_argument("--cache", default=str(ROOT / "work" / "web_load"), help="where the built log is kept")
    parser.add_argument("--keep", action="store_true", help="keep the station's folder (printed)")
    parser.add_argument("--build-only", action="store_true", help="build (or find) the log and stop")
    parser.add_argument("--json", default="work/web_load.json")
    args = parser.parse_args()
    if args.build_only:
        path, info = cached_log(Path(args.cache), args.rows, args.days)
        print(path, json.dumps(info))
        return 0
    report = run(args)
    print_table(report)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
