"""``edge-inspect run``: a station (the daemon) until SIGINT or SIGTERM, a line per inspection on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path


def print_event(event) -> None:
    """One line per event on stdout: an inspection names its failed checks by number (from 1) and name."""
    from ..station.events import AlarmCleared, AlarmRaised, InspectionDone, Started, Stopped

    if isinstance(event, InspectionDone):
        failed = "; ".join(  # by number (from 1, as on the HMI) and name, with the reason
            f"{i} {c.name}: {c.reason}" for i, c in enumerate(event.checks, 1) if c.status != "pass"
        )
        print(
            f"{event.result_id:>6} {event.verdict:5} recipe={event.recipe} part={event.part_id or '-'} "
            f"defects={event.defect_count}"
            + (f" failed: {failed}" if failed else "")
            + (f" {event.error}" if event.error else ""),
            flush=True,
        )
    elif isinstance(event, AlarmRaised):
        print(f"[alarm] {event.code} {event.message}", flush=True)
    elif isinstance(event, AlarmCleared):
        print(f"[alarm_cleared] {event.code}", flush=True)
    elif isinstance(event, Started):
        print(f"[started] {event.station}", flush=True)
    elif isinstance(event, Stopped):
        print("[stopped]", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from ..config import load_config
    from ..daemon import Daemon, build_station

    config, sha = load_config(args.config, bundle=args.bundle)
    if config.plc.enabled:  # a port in use or a missing serial device is reported before the model loads
        from ..plc.modbus import preflight

        preflight(config.plc.link_settings())

    async def main() -> None:
        path = Path(args.config).resolve()
        station = build_station(config, sha, path.parent, config_path=path)
        station.events.subscribe(print_event)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        daemon = Daemon(station)
        await daemon.start()  # a web port in use: the PLC sees offline; the error is reported in one line
        if daemon.web is not None:
            scheme = "https" if config.web.tls_cert else "http"
            print(f"HMI on {scheme}://{config.web.host}:{config.web.port}/", flush=True)
        await stop.wait()
        await daemon.stop()

    asyncio.run(main())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a station (the daemon)")
    run.add_argument("config", help="station.yaml")
    run.add_argument("--bundle", help="model bundle (overrides model.bundle)")
    run.set_defaults(func=cmd_run)
