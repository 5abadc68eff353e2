"""Modbus read latency of the appliance (server mode, TCP), idle and during back-to-back
inspections, in one run: ``python benchmarks/plc_latency.py [--bundle DIR] [--seconds 10]``.

The station runs in this process with the real model (the demo student unless ``--bundle``);
a separate process is the PLC: one connection drives handshakes back to back with raw Modbus
frames, another reads 10 input registers every ``--period-ms`` and times each answer. Prints a
table and writes JSON (``--json``). Target (docs/plc.md): p99 ≤ 20 ms during inspections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspect.commands.bench import percentile  # noqa: E402


class Master:
    """A minimal Modbus TCP master on raw frames (unit 1)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tid = 0

    def call(self, pdu: bytes) -> bytes:
        self.tid = (self.tid + 1) & 0xFFFF
        self.sock.sendall(struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, 1) + pdu)
        header = self._recv(7)
        return self._recv(struct.unpack(">H", header[4:6])[0] - 1)

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def bit(self, address: int) -> int:
        return self.call(struct.pack(">BHH", 2, address, 1))[2] & 1

    def coil(self, address: int, on: bool) -> None:
        self.call(struct.pack(">BHH", 5, address, 0xFF00 if on else 0))

    def wait(self, address: int, value: int, stop: threading.Event) -> None:
        while self.bit(address) != value and not stop.is_set():
            time.sleep(0.002)


def _drive(port: int, stop: threading.Event, cycles: list[float]) -> None:
    """Handshakes back to back on the default server map."""
    m, trigger_id = Master(port), 0
    while not stop.is_set():
        trigger_id = trigger_id % 65535 + 1
        m.wait(1, 1, stop)  # ready
        t0 = time.perf_counter()
        m.call(struct.pack(">BHHB", 16, 0, 2, 4) + struct.pack(">HH", trigger_id, 1))
        m.coil(0, True)
        m.wait(3, 1, stop)  # results_valid
        m.call(struct.pack(">BHH", 4, 0, 5))
        m.coil(0, False)
        m.coil(1, True)
        m.wait(3, 0, stop)
        m.coil(1, False)
        cycles.append((time.perf_counter() - t0) * 1000)


def _probe(port: int, seconds: float, period_s: float) -> list[float]:
    m, out = Master(port), []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        m.call(struct.pack(">BHH", 4, 0, 10))
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, period_s - (time.perf_counter() - t0)))
    return out


def plc_process(port: int, seconds: float, period_s: float, queue) -> None:
    idle = _probe(port, seconds, period_s)
    stop, cycles = threading.Event(), []
    driver = threading.Thread(target=_drive, args=(port, stop, cycles), daemon=True)
    driver.start()
    time.sleep(1.0)  # let the inspections get going
    busy = _probe(port, seconds, period_s)
    stop.set()
    driver.join(30)
    queue.put({"idle": idle, "inspecting": busy, "cycles_ms": cycles})


def _row(name: str, values: list[float]) -> dict:
    return {
        "phase": name,
        "reads": len(values),
        "p50_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2),
    }


async def run(bundle: str | None, seconds: float, period_s: float, spin: bool | None = None) -> dict:
    from edge_inspect.commands.demo import demo_config
    from edge_inspect.daemon import build_station

    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="plc-bench-"))
    config, sha = demo_config(workdir, bundle, port)
    config.plc.timeout_s = 0
    if spin is not None:
        config.model.spin = spin
    station = build_station(config, sha, workdir)
    await station.start()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=plc_process, args=(port, seconds, period_s, queue))
    proc.start()
    try:
        result = await asyncio.get_running_loop().run_in_executor(None, queue.get, True, 4 * seconds + 120)
    finally:
        proc.join(30)
        await station.stop()
    rows = [_row("idle", result["idle"]), _row("inspecting", result["inspecting"])]
    cycles = result["cycles_ms"]
    return {
        "rows": rows,
        "inspections": len(cycles),
        "cycle_ms_p50": round(percentile(cycles, 0.5), 1) if cycles else None,
        "model": station.model_sha256[:12],
        "period_ms": period_s * 1000,
        "seconds_per_phase": seconds,
        "spin": getattr(station.model.backend, "spin", None),
    }  # what the model's sessions run with


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="model bundle (default: the demo student)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--period-ms", type=float, default=10.0, help="time between two probe reads")
    parser.add_argument(
        "--spin",
        choices=["on", "off"],
        default=None,
        help="the station's model.spin: worker threads busy-wait during a run (on) or sleep between "
        "kernels (off); default: the demo config's",
    )
    parser.add_argument("--json", default="work/plc_bench.json")
    args = parser.parse_args()
    report = asyncio.run(
        run(args.bundle, args.seconds, args.period_ms / 1000, None if args.spin is None else args.spin == "on")
    )
    print(f"{'phase':12} {'reads':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in report["rows"]:
        print(f"{r['phase']:12} {r['reads']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}")
    print(
        f"{report['inspections']} inspections, cycle p50 {report['cycle_ms_p50']} ms (model {report['model']}, "
        f"spin {({True: 'on', False: 'off'}).get(report['spin'], '-')})"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
