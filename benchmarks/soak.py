"""A station's memory over many parts: ``python benchmarks/soak.py [--inspections 20000] [--warmup 2000]``.

Starts a real station (``edge-inspect run``: the synthetic camera, the demo student, the web on a free
loopback port, fleet publishing to a local Mosquitto when one is installed) triggered as fast as the
machine allows (``triggers.interval_s`` 0.001). Beside it: ``--sse`` clients hold ``/api/events``
open, ``--opcua`` OPC UA clients stay subscribed to the result events and the state machine, and
every ``--browse-s`` seconds a client loads ``/review`` and the whole CSV export.
Every ``--sample-s`` seconds it samples the station's RSS, open file descriptors and threads (from
/proc) and the log's size, with the inspection count from ``/api/status``.

Prints a table and the RSS slope after warm-up (KB per 1,000 inspections, a least-squares line over
the samples past ``--warmup``), writes JSON (``--json``). Target (docs/performance.md): the slope
within noise of zero (≤ 50 KB per 1,000 inspections), file descriptors and threads flat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "edge_inspect" / "demo_station.yaml"


# ``--tracemalloc``: the station runs under tracemalloc (one frame per allocation: a deeper trace
# slows the station too much to start) and writes a snapshot on SIGUSR1; the soak takes one at
# warm-up and one at the end and prints where Python's memory grew in between.
TRACED_STATION = """
import signal, sys, tracemalloc
tracemalloc.start(1)
def dump(signum, frame):
    tracemalloc.take_snapshot().dump(sys.argv[2] + ".%d" % dump.n)
    dump.n += 1
dump.n = 0
signal.signal(signal.SIGUSR1, dump)
from edge_inspect.cli import main
sys.exit(main(["run", sys.argv[1]]))
"""


def snapshot(station: subprocess.Popen, prefix: Path, n: int) -> Path | None:
    """Ask the traced station for snapshot ``n``; its path once written (None: it did not come)."""
    path = Path(f"{prefix}.{n}")
    station.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists():
            size = path.stat().st_size
            time.sleep(1.0)
            if path.stat().st_size == size:
                return path
        time.sleep(0.5)
    return None


def python_growth(first: Path, last: Path, parts: int, top: int = 12) -> list[dict]:
    """The lines whose live Python memory grew most between two snapshots, per 1,000 parts."""
    import tracemalloc

    before, after = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(last))
    stats = after.compare_to(before, "lineno")
    # the largest changes (arrays in flight at either moment show here too), then the most new
    # objects kept: a leak of small objects grows in count, not in one large block
    chosen = stats[:top] + sorted(stats[top:], key=lambda s: -s.count_diff)[:top]
    rows = []
    for stat in chosen:
        frame = stat.traceback[0]
        rows.append({
            "where": f"{frame.filename}:{frame.lineno}",
            "kb": round(stat.size_diff / 1024, 1),
            "blocks": stat.count_diff,
            "kb_per_1000": round(stat.size_diff / 1024 / max(parts, 1) * 1000, 1),
        })  # fmt: skip
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_figures(pid: int) -> dict:
    """RSS (KB) and threads from /proc/PID/status, open file descriptors from /proc/PID/fd."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss_kb": fields["VmRSS"], "threads": fields["Threads"], "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def slope_per_1000(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x, times 1,000."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 1000 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen | None, int | None]:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None)
    if binary is None:
        return None, None
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        + ("user root\n" if os.getuid() == 0 else "")
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def write_config(folder: Path, web_port: int, broker_port: int | None, opcua_port: int | None = None) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    config["plc"] = {"enabled": False}
    config["triggers"] = {"plc": False, "recipe": 1, "interval_s": 0.001}
    config["storage"] = {"dir": str(folder / "data"), "save_pass_every": 10}
    config["web"] = {"enabled": True, "host": "127.0.0.1", "port": web_port, "open_view": True}
    if broker_port is not None:
        config["fleet"] = {"host": "127.0.0.1", "port": broker_port, "site": "soak", "line": "l1"}
    if opcua_port is not None:  # anonymous subscribers on a loopback test bench (docs/opcua.md)
        config["opcua"] = {
            "endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/edge-inspect",
            "security": ["None"],
            "anonymous": True,
        }
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def hold_event_stream(base: str, stop: threading.Event) -> None:
    """One browser's /api/events, read line by line until ``stop``."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(base + "/api/events", timeout=10) as stream:
                while not stop.is_set() and stream.readline():
                    pass
        except OSError:
            stop.wait(1.0)


def hold_opcua_subscriptions(url: str, clients: int, stop: threading.Event, counts: dict) -> None:
    """``clients`` OPC UA sessions, each subscribed to the result events and to the state machine's
    current state (what an MES or SCADA client keeps open), until ``stop``."""
    import asyncio

    from asyncua import Client, ua

    class Handler:
        def event_notification(self, event) -> None:
            counts["opcua_events"] = counts.get("opcua_events", 0) + 1

        def datachange_notification(self, node, value, data) -> None:
            counts["opcua_changes"] = counts.get("opcua_changes", 0) + 1

    async def one() -> None:
        client = Client(url, timeout=10)
        await client.connect()
        try:
            ns = await client.get_namespace_index("urn:edge-inspect:vision")
            sub = await client.create_subscription(100, Handler())
            await sub.subscribe_events(
                client.get_node(ua.NodeId("VisionSystem", ns)),
                client.get_node(ua.NodeId("Types.VisionResultReadyEventType", ns)),
            )
            await sub.subscribe_data_change(
                client.get_node(ua.NodeId("VisionSystem.VisionStateMachine.CurrentState", ns))
            )
            while not stop.is_set():
                await asyncio.sleep(0.5)
        finally:
            await asyncio.wait_for(client.disconnect(), 5)

    async def all_clients() -> None:
        await asyncio.gather(*(one() for _ in range(clients)))

    try:
        asyncio.run(all_clients())
    except Exception as err:  # noqa: BLE001 - a benchmark reports, it does not stop the soak
        counts["opcua_error"] = repr(err)


def browse(base: str, every_s: float, stop: threading.Event, counts: dict) -> None:
    """A QA engineer now and then: the review page and the whole CSV export."""
    while not stop.wait(every_s):
        for path in ("/review", "/api/inspections.csv"):
            try:
                with urllib.request.urlopen(base + path, timeout=120) as response:
                    while response.read(1 << 16):
                        pass
                counts[path] = counts.get(path, 0) + 1
            except OSError:
                counts["errors"] = counts.get("errors", 0) + 1


def memory_holders(base: str) -> dict:
    """The station's memory by holder from /metrics (KB; python_blocks as a count)."""
    figures: dict = {}
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('edge_inspect_memory_bytes{kind="'):
                kind = line.split('"')[1]
                figures[f"{kind}_kb"] = int(float(line.rsplit(" ", 1)[1]) / 1024)
            elif line.startswith("edge_inspect_python_blocks "):
                figures["python_blocks"] = int(line.rsplit(" ", 1)[1])
    return figures


def status(base: str) -> dict:
    with urllib.request.urlopen(base + "/api/status", timeout=10) as response:
        return json.loads(response.read())


def run(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    broker, broker_port = (None, None) if args.no_fleet else start_mosquitto(folder)
    web_port = free_port()
    opcua_port = free_port() if args.opcua else None
    path = write_config(folder, web_port, broker_port, opcua_port)
    traced = folder / "python.snapshot"
    command = (
        [sys.executable, "-c", TRACED_STATION, str(path), str(traced)]
        if args.tracemalloc
        else [sys.executable, "-m", "edge_inspect.cli", "run", str(path)]
    )
    station = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "station.err", "wb"),
    )
    base = f"http://127.0.0.1:{web_port}"
    stop = threading.Event()
    browsed: dict = {}
    samples: list[dict] = []
    snapshots: list[tuple[int, Path]] = []
    started = time.monotonic()
    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + (600 if args.tracemalloc else 120)  # traced, it starts several times slower
        while True:
            try:
                status(base)
                break
            except OSError as err:
                if station.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"the station did not start: {(folder / 'station.err').read_text()[-2000:]}"
                    ) from err
                time.sleep(0.5)
        threads = [threading.Thread(target=hold_event_stream, args=(base, stop), daemon=True) for _ in range(args.sse)]
        threads.append(threading.Thread(target=browse, args=(base, args.browse_s, stop, browsed), daemon=True))
        if args.opcua:
            url = f"opc.tcp://127.0.0.1:{opcua_port}/edge-inspect"
            threads.append(
                threading.Thread(
                    target=hold_opcua_subscriptions,
                    args=(url, args.opcua, stop, browsed),
                    name="opcua-clients",
                    daemon=True,
                )
            )
        for t in threads:
            t.start()
        while True:
            total = status(base)["counters"]["total"]
            db = folder / "data" / "inspections.db"
            log_mb = sum(p.stat().st_size for p in db.parent.glob("inspections.db*")) / 1e6 if db.exists() else 0.0
            samples.append(
                {
                    "t_s": round(time.monotonic() - started, 1),
                    "inspections": total,
                    **proc_figures(station.pid),
                    **memory_holders(base),
                    "log_mb": round(log_mb, 2),
                }
            )
            s = samples[-1]
            print(
                f"{s['t_s']:8.0f} s  {s['inspections']:7d} parts  RSS {s['rss_kb'] / 1024:7.1f} MB  "
                f"fds {s['fds']:3d}  threads {s['threads']:3d}  log {s['log_mb']:7.1f} MB  "
                f"malloc {s.get('malloc_in_use_kb', 0) / 1024:6.1f}+{s.get('malloc_free_kb', 0) / 1024:5.1f} MB  "
                f"sqlite {s.get('sqlite_kb', 0) / 1024:5.1f} MB  py blocks {s.get('python_blocks', 0)}",
                flush=True,
            )
            if args.tracemalloc and not snapshots and total >= args.warmup:
                taken = snapshot(station, traced, 0)
                if taken is not None:
                    snapshots.append((total, taken))
            if total >= args.inspections or station.poll() is not None:
                break
            try:
                time.sleep(args.sample_s)
            except KeyboardInterrupt:  # stopped early: report what was sampled
                break
    finally:
        if snapshots and station.poll() is None:
            taken = snapshot(station, traced, 1)
            if taken is not None:
                snapshots.append((status(base)["counters"]["total"], taken))
        stop.set()
        for t in threads:  # the OPC UA clients close their sessions before the station goes
            if t.name == "opcua-clients":
                t.join(15)
        station.send_signal(signal.SIGINT)
        try:
            station.wait(60)
        except subprocess.TimeoutExpired:
            station.kill()
        if broker is not None:
            broker.terminate()
    after = [s for s in samples if s["inspections"] >= args.warmup]
    result = {
        "inspections": samples[-1]["inspections"] if samples else 0,
        "warmup": args.warmup,
        "seconds": round(time.monotonic() - started, 1),
        "sse_clients": args.sse,
        "fleet": broker is not None,
        "opcua_clients": args.opcua,
        "browsed": browsed,
        "rss_slope_kb_per_1000": round(slope_per_1000([(s["inspections"], s["rss_kb"]) for s in after]), 1),
        "holder_slopes_per_1000": {
            key: round(slope_per_1000([(s["inspections"], s[key]) for s in after if key in s]), 1)
            for key in ("malloc_in_use_kb", "malloc_free_kb", "sqlite_kb", "python_blocks")
        },
        "fd_range": [min(s["fds"] for s in after), max(s["fds"] for s in after)] if after else None,
        "thread_range": [min(s["threads"] for s in after), max(s["threads"] for s in after)] if after else None,
        "rss_mb_after_warmup": [round(after[0]["rss_kb"] / 1024, 1), round(after[-1]["rss_kb"] / 1024, 1)]
        if after
        else None,
        "samples": samples,
    }
    if len(snapshots) == 2:
        (n0, first), (n1, last) = snapshots
        result["python_growth"] = {"from": n0, "to": n1, "lines": python_growth(first, last, n1 - n0)}
    shutil.rmtree(folder, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inspections", type=int, default=20000, help="stop after this many inspections")
    parser.add_argument("--warmup", type=int, default=2000, help="inspections before the slope is measured")
    parser.add_argument("--sse", type=int, default=3, help="event-stream clients held open")
    parser.add_argument("--browse-s", type=float, default=60.0, help="seconds between review + CSV loads")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--opcua", type=int, default=2, help="OPC UA clients subscribed to results (0: no OPC UA)")
    parser.add_argument("--no-fleet", action="store_true", help="no Mosquitto and no fleet publishing")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the station's Python memory; print where it grew after warm-up",
    )
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a shell's background job ignores) end the run cleanly: the station is
    # stopped and the samples so far are reported.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    result = run(args)
    print(
        f"\n{result['inspections']} inspections in {result['seconds']:.0f} s; after {args.warmup}: "
        f"RSS {result['rss_mb_after_warmup']} MB, slope {result['rss_slope_kb_per_1000']} KB per 1,000 "
        f"inspections; fds {result['fd_range']}, threads {result['thread_range']}; browsed {result['browsed']}"
    )
    print(f"slopes by holder (KB, or Python blocks, per 1,000 inspections): {result['holder_slopes_per_1000']}")
    growth = result.get("python_growth")
    if growth:
        print(f"\nPython memory grown from inspection {growth['from']} to {growth['to']}, by line:")
        for row in growth["lines"]:
            print(f"  {row['kb']:9.1f} KB {row['blocks']:8d} blocks  {row['kb_per_1000']:7.1f} KB/1000  {row['where']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
