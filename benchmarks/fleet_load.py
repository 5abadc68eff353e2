"""Fleet ingest on one machine: ``python benchmarks/fleet_load.py [--stations 20] [--rate 10] [--seconds 300]``.

Starts Mosquitto and a PostgreSQL cluster (fsync on) in a temporary folder, the collector as a
separate process (``edge-inspect fleet collect``), and ``--stations`` simulated stations split over
``--procs`` processes. Each simulated station is the station's real fleet path without camera and
model: its own log (``Store``, SQLite WAL, synchronous=FULL) written ``--rate`` times a second with
a demo-recipe inspection (3 checks, points), the outbox row in the same transaction, and its own
``Publisher`` thread and MQTT connection. After ``--seconds`` the stations stop logging and the run
waits until the collector has stored everything.

Measured: rows/s into PostgreSQL, ingest lag (PostgreSQL's commit transaction time minus the
inspection's log time) p50/p95/p99/max, CPU seconds and peak RSS per component (from /proc), and
that every logged inspection is in PostgreSQL exactly once. Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")


def _record(n: int):
    from edge_inspect.inspection.checks import CheckOutcome
    from edge_inspect.logbook import InspectionRecord
    from edge_inspect.verdict import Verdict

    fail = n % 20 == 0
    outcomes = [
        CheckOutcome(
            "surface",
            "point",
            "fail" if fail else "pass",
            "found 1" if fail else "none",
            [(0.41, 0.52)] if fail else [],
            int(fail),
        ),
        CheckOutcome("screws", "count", "pass", "4 of 4", [(0.1, 0.1), (0.9, 0.1), (0.1, 0.9), (0.9, 0.9)], 4),
        CheckOutcome("label", "qa", "pass", "answered yes", answer="yes", p_yes=0.97, margin=0.94),
    ]
    return InspectionRecord(
        result_id=n,
        station="",
        recipe=1,
        recipe_name="plate",
        part_id=f"P{n:08d}",
        trigger="plc",
        verdict=Verdict.FAIL if fail else Verdict.PASS,
        error="",
        outcomes=outcomes,
        timings_ms={"grab_ms": 3.0, "inspect_ms": 95.0, "cycle_ms": 101.0},
        model_sha256="m" * 64,
        config_sha256="c" * 64,
        rois=[None, None, None],
    )


def _stations(names: list[str], folder: str, broker_port: int, rate: float, seconds: float, done, counts) -> None:
    """One process of simulated stations: a logging thread and a Publisher per station."""
    from edge_inspect.fleet.link import attach_outbox
    from edge_inspect.fleet.messages import Topics
    from edge_inspect.fleet.mqtt import BrokerSettings
    from edge_inspect.fleet.publisher import Publisher
    from edge_inspect.logbook import Store

    broker = BrokerSettings("127.0.0.1", broker_port)
    parts = []
    for name in names:
        store = Store(Path(folder) / name, save_pass_every=0)
        topics = Topics("edge-inspect", "bench", "line1", name)
        outbox = attach_outbox(store, topics)
        publisher = Publisher(outbox, topics, broker, f"bench-{name}", window=500, confirm_timeout_s=30)
        publisher.set_status({"alarms": []})
        publisher.start()
        parts.append((name, store, outbox, publisher))

    def log(name, store, publisher):
        start, n = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            n += 1
            store.record(_record(n), None)
            publisher.wake()
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
        counts[name] = n

    threads = [threading.Thread(target=log, args=(name, store, pub)) for name, store, _, pub in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while not all(outbox.count == 0 for _, _, outbox, _ in parts):  # everything confirmed by the collector
        time.sleep(0.2)
    for _, store, _, publisher in parts:
        publisher.stop()
        store.close()
    done.set()


def _proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return (int(fields[11]) + int(fields[12])) / TICK, rss
    except (OSError, IndexError):
        return 0.0, 0


def _postgres_pids(data_dir: Path) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
                if b"postgres" in cmd and (b"postgres:" in cmd or str(data_dir).encode() in cmd):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0, help="inspections per second per station")
    ap.add_argument("--seconds", type=float, default=300.0, help="how long the stations log")
    ap.add_argument("--procs", type=int, default=2, help="processes the simulated stations are split over")
    ap.add_argument("--json", default="work/fleet_load.json")
    args = ap.parse_args()

    import psycopg

    from tests.support.fleet_services import Mosquitto, Postgres

    folder = Path(tempfile.mkdtemp(prefix="fleet-load-"))
    pg = Postgres(fsync=True).start()
    broker = Mosquitto(folder).start()
    dsn = pg.database("fleet_load")
    collector = subprocess.Popen(
        [sys.executable, "-m", "edge_inspect.cli", "fleet", "collect", "--broker", broker.url, "--db", dsn],
        stdout=subprocess.DEVNULL,
    )
    names = [f"st{i:03d}" for i in range(args.stations)]
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    counts = manager.dict()
    procs, events = [], []
    time.sleep(2.0)  # the collector subscribes (its session then keeps everything)
    for k in range(args.procs):
        done = ctx.Event()
        p = ctx.Process(
            target=_stations,
            args=(names[k :: args.procs], str(folder), broker.port, args.rate, args.seconds, done, counts),
        )
        p.start()
        procs.append(p)
        events.append(done)
    components = {
        "stations": lambda: [p.pid for p in procs],
        "broker": lambda: [broker.proc.pid],
        "collector": lambda: [collector.pid],
        "postgres": lambda: _postgres_pids(pg.folder),
    }
    peak = dict.fromkeys(components, 0)
    cpu0 = {k: sum(_proc_stats(pid)[0] for pid in f()) for k, f in components.items()}
    t0 = time.monotonic()
    while not all(e.is_set() for e in events):
        for k, f in components.items():
            peak[k] = max(peak[k], sum(_proc_stats(pid)[1] for pid in f()))
        time.sleep(0.5)
    wall = time.monotonic() - t0
    cpu = {k: sum(_proc_stats(pid)[0] for pid in f()) - cpu0[k] for k, f in components.items()}
    for p in procs:
        p.join()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT (station_key, inspection_id)), min(received_at), "
            "max(received_at) FROM inspections"
        ).fetchone()
        lags = [r[0] for r in conn.execute("SELECT extract(epoch FROM received_at - ts)::float8 FROM inspections")]
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        payload = conn.execute(
            "SELECT avg(length(t::text)) FROM (SELECT i.*, (SELECT json_agg(c) FROM checks c "
            "WHERE c.msg_id = i.msg_id) FROM inspections i LIMIT 1000) t"
        ).fetchone()[0]
    collector.terminate()
    collector.wait(20)
    broker.stop()
    pg.stop()
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    logged = sum(counts.values())
    span = (rows[3] - rows[2]).total_seconds()
    lag_ms = [x * 1000 for x in lags]
    result = {
        "stations": args.stations,
        "rate_per_station": args.rate,
        "seconds": args.seconds,
        "logged": logged,
        "stored": rows[0],
        "distinct": rows[1],
        "exactly_once": rows[0] == rows[1] == logged,
        "rows_per_s": round(rows[0] / span, 1) if span else None,
        "wall_s": round(wall, 1),
        "lag_ms": {
            "p50": round(statistics.median(lag_ms), 1),
            "p95": round(_percentile(lag_ms, 0.95), 1),
            "p99": round(_percentile(lag_ms, 0.99), 1),
            "max": round(max(lag_ms), 1),
        },
        "cpu_percent_of_one_core": {k: round(100 * v / wall, 1) for k, v in cpu.items()},
        "peak_rss_mb": {k: round(v / 1e6, 1) for k, v in peak.items()},
        "database_bytes": db_bytes,
        "database_bytes_per_inspection": round(db_bytes / max(rows[0], 1)),
        "row_json_bytes": round(float(payload or 0)),
        "cores": os.cpu_count(),
        "load_avg_end": os.getloadavg(),
    }
    print(
        f"{args.stations} stations x {args.rate:g}/s for {args.seconds:g} s: logged {logged}, stored {rows[0]} "
        f"(exactly once: {result['exactly_once']})"
    )
    print(f"{'':<12}{'value':>12}")
    print(f"{'rows/s':<12}{result['rows_per_s']:>12}")
    for k in ("p50", "p95", "p99", "max"):
        print(f"{'lag ' + k + ' ms':<12}{result['lag_ms'][k]:>12}")
    print(f"\n{'component':<12}{'CPU % core':>12}{'peak RSS MB':>13}")
    for k in components:
        print(f"{k:<12}{result['cpu_percent_of_one_core'][k]:>12}{result['peak_rss_mb'][k]:>13}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print(f"\nJSON: {args.json}")
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
