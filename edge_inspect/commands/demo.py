"""``edge-inspect demo``: the embedded default — a whole station on one machine, no hardware.

Synthetic camera, bundled student model, Modbus TCP server on 127.0.0.1:5020, a simulated PLC
that triggers inspections through the real handshake over TCP, and the SQLite log in a working
folder. Prints every verdict as the PLC reads it, and a summary at the end (Ctrl-C or --duration).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import statistics
import time
from collections import deque
from pathlib import Path

from ..config import load_config
from ..config.access import Role
from ..daemon import Daemon, build_station
from ..plc.simulated import PLCTimeout, SimulatedPLC
from ..station.core import Station
from ..station.events import InspectionDone
from .bench import percentile

RESULTS_KEPT = 100_000
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "demo_station.yaml"
VERDICTS = {1: "PASS", 2: "FAIL", 3: "ERROR"}


KEEP = object()  # --defect-rate not given: the demo file's (0.1)


def demo_config(workdir: Path, bundle: str | None, port: int, defect_rate: float | None | object = KEEP):
    """The demo station; ``defect_rate`` the share of defective parts, None the generator's own mix."""
    config, sha = load_config(DEMO_CONFIG, bundle=bundle)
    config.storage.dir = str(workdir.resolve())
    config.plc.port = port
    if defect_rate is None or isinstance(defect_rate, int | float):
        config.camera.synthetic.defect_rate = None if defect_rate is None else float(defect_rate)
    return config, sha


def demo_users(config) -> dict[Role, str]:
    """One account per role with a password made up for this run: the demo ships no usable password."""
    from ..config import WebUser
    from ..http.auth import hash_password

    roles: tuple[Role, ...] = ("operator", "qa", "integrator")
    logins = {role: secrets.token_urlsafe(6) for role in roles}
    config.web.users = [WebUser(name=role, role=role, password_hash=hash_password(pw)) for role, pw in logins.items()]
    return logins


async def run_demo(
    workdir: Path,
    duration_s: float = 0.0,
    bundle: str | None = None,
    port: int = 5020,
    period_s: float = 0.5,
    quiet: bool = False,
    web_port: int = 8080,
    defect_rate: float | None | object = KEEP,
) -> dict:
    config, sha = demo_config(workdir, bundle, port, defect_rate)
    workdir.mkdir(parents=True, exist_ok=True)
    station = build_station(config, sha, DEMO_CONFIG.parent)
    last: dict[int, InspectionDone] = {}  # result_id → its event, for the reasons printed per part
    station.events.subscribe(lambda e: last.update({e.result_id: e}) if isinstance(e, InspectionDone) else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    results: deque = deque(maxlen=RESULTS_KEPT)  # the summary's parts: bounded for a demo left running
    logins = demo_users(config) if config.web.enabled and web_port else {}
    config.web.enabled = config.web.enabled and bool(web_port)
    config.web.port = web_port or config.web.port
    daemon = Daemon(station)
    await daemon.start()
    web = daemon.web
    port = getattr(getattr(station.link, "server", None), "port", port)  # --port 0: the one picked
    plc = SimulatedPLC(station.signal_map, "127.0.0.1", port)
    if not quiet:
        print(
            f"demo station up: Modbus TCP 127.0.0.1:{port}, log {station.store.path}, "
            f"model {station.model_sha256[:12]}; Ctrl-C to stop"
        )
        if web is not None:
            accounts = ", ".join(f"{name} / {password}" for name, password in logins.items())
            print(f"HMI: http://127.0.0.1:{web_port}/  (log in as {accounts}; passwords made up for this run)")
    started = time.monotonic()
    try:
        await plc.connect()
        trigger_id = 0
        while not stop.is_set() and not (duration_s and time.monotonic() - started >= duration_s):
            trigger_id = (trigger_id % 65535) + 1
            part = f"P{trigger_id:06d}"
            try:
                r = await plc.cycle(trigger_id, recipe=1, part_id=part)
            except PLCTimeout as err:
                print(f"PLC: {err}")
                continue
            results.append(r)
            event = last.pop(r.result_id, None)
            last.clear()  # events of cycles the PLC gave up on: never kept
            if not quiet:
                reasons = (
                    "; ".join(f"{c.name}: {c.reason}" for c in (event.checks if event else []) if c.status != "pass")
                    or "all checks pass"
                )
                print(
                    f"#{r.result_id:<5} {part}  {VERDICTS.get(r.verdict, r.verdict):5}  defects={r.defect_count} "
                    f"failed=0b{r.failed_checks:03b}  {r.trigger_to_valid_ms:6.0f} ms  {reasons}"
                )
            try:
                await asyncio.wait_for(stop.wait(), period_s)
            except asyncio.TimeoutError:  # not the builtin one on Python 3.10
                pass
    finally:
        plc.close()
        await daemon.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    summary = summarize(results)
    if not quiet:
        print_summary(summary, station)
    return summary


def summarize(results) -> dict:
    latencies = sorted(r.trigger_to_valid_ms for r in results)
    counts = {name: sum(1 for r in results if VERDICTS.get(r.verdict) == name) for name in VERDICTS.values()}

    def pct(p: float) -> float:
        return percentile(latencies, p) if latencies else float("nan")

    return {
        "inspections": len(results),
        **counts,
        "trigger_to_valid_ms": {
            "p50": pct(0.5),
            "p95": pct(0.95),
            "mean": statistics.fmean(latencies) if latencies else float("nan"),
        },
    }


def print_summary(summary: dict, station: Station) -> None:
    t = summary["trigger_to_valid_ms"]
    print(
        f"\n{summary['inspections']} inspections: {summary['PASS']} PASS, {summary['FAIL']} FAIL, "
        f"{summary['ERROR']} ERROR; trigger→results_valid p50 {t['p50']:.0f} ms, p95 {t['p95']:.0f} ms"
    )
    print(f"log: {station.store.path}")
