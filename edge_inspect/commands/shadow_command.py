"""``edge-inspect model shadow start|stop|status`` (docs/model-lifecycle.md, "Shadow on the line").

``start`` and ``stop`` write the request into the station's model store; the running station acts on
it within seconds (a stopped one at its next start). ``status`` reads the request and the log's
newest shadow run: its counts, agreement per check, the disagreements and the cost."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any


def _store_and_log(args: argparse.Namespace):
    from ..config import load_storage
    from ..modelstore import ModelStore

    storage, folder = load_storage(args.config)
    return ModelStore(folder, storage.models_max_mb * 1e6), folder.parent


def cmd_start(args: argparse.Namespace) -> int:
    """A version, ``--parts`` or ``--hours`` not given are the station file's ``model.shadow`` values."""
    from ..config import load_shadow
    from ..modelstore import ModelStore, default_user, request_start

    storage, folder, settings = load_shadow(args.config)
    store = ModelStore(folder, storage.models_max_mb * 1e6)
    version = args.version if args.version is not None else settings.version
    parts = args.parts if args.parts is not None else settings.parts
    hours = args.hours if args.hours is not None else settings.hours
    request = request_start(store, version, args.user or default_user(), parts, hours)
    bounds = " and ".join(b for b in (f"{parts} parts" if parts else "", f"{hours:g} hours" if hours else "") if b)
    print(
        f"shadow of version {request['version']} asked for (request {request['seq']}), ending after {bounds}; "
        "a running station starts it within seconds, a stopped one at its start"
    )
    return 0


def going(data: Path, request: dict[str, Any] | None) -> bool:
    """Whether a shadow run is going on the station of the log in ``data``: a run open in the log (also
    one a stopped station resumes at its start), or a start asked for that no run has taken up yet."""
    from ..logbook import Store, shadow

    latest = None
    if (data / "inspections.db").is_file():
        store = Store(data)
        try:
            latest = shadow.latest_run(store)
        finally:
            store.close()
    if latest is not None and latest["ended_at"] is None:
        return True
    taken_up = (latest["request_seq"] or 0) if latest is not None else 0
    return request is not None and request["action"] == "start" and request["seq"] > taken_up


def cmd_stop(args: argparse.Namespace) -> int:
    from ..modelstore import default_user, read_request, request_stop

    store, data = _store_and_log(args)
    if not going(data, read_request(store)):
        print("no shadow run is going; nothing to stop")
        return 0
    request = request_stop(store, args.user or default_user())
    print(f"stop asked for (request {request['seq']}); a running station ends its shadow run within seconds")
    return 0


def _when(unix: float | None) -> str:
    return "-" if unix is None else datetime.fromtimestamp(unix).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def status(data: Path, request: dict[str, Any] | None) -> dict[str, Any]:
    """The newest request and run of the log in ``data`` (JSON-ready)."""
    from ..logbook import Store, shadow

    if not (data / "inspections.db").is_file():
        return {"request": request, "run": None}
    store = Store(data)
    try:
        latest = shadow.latest_run(store)
        summary = shadow.summary(store, latest["id"]) if latest is not None else None
    finally:
        store.close()
    return {"request": request, "run": summary}


def cmd_status(args: argparse.Namespace) -> int:
    from ..modelstore import read_request

    store, data = _store_and_log(args)
    report = status(data, read_request(store))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    run, request = report["run"], report["request"]
    if request is not None:
        what = f"start {request['version'][:12]}" if request["action"] == "start" else "stop"
        print(
            f"last request: {what} by {request.get('by', '-')} at {request.get('at', '-')} (request {request['seq']})"
        )
    if run is None:
        print("no shadow run in the log")
        return 0
    state = "running" if run["ended_at"] is None else f"ended {_when(run['ended_at'])}: {run['end_reason']}"
    bounds = ", ".join(b for b in (f"{run['parts_bound']} parts" if run["parts_bound"] else "",
                                   f"{run['hours_bound']:g} hours" if run["hours_bound"] else "") if b)  # fmt: skip
    print(f"run {run['id']}: {run['version'][:12]} beside production {(run['production'] or '-')[:12]}, {state}")
    print(f"  started {_when(run['started_at'])} by {run['started_by']}, bounded by {bounds}")
    skipped = run["skipped_line"] + run["skipped_shadow"]
    agreement = "-" if run["agreement"] is None else f"{run['agreement']:.1%}"
    print(
        f"  shadowed {run['shadowed']}, skipped {skipped} (line busy {run['skipped_line']}, shadow busy "
        f"{run['skipped_shadow']}), disagreements {run['disagreements']}, agreement {agreement}"
        + (f" of {run['judged']} compared ({run['unfamiliar']} unfamiliar to production, not compared)"
           if run["unfamiliar"] else "")
    )  # fmt: skip
    for c in run["checks"]:
        print(f"  check {c['name']}: {c['agree']} of {c['judged']} agree ({c['agreement']:.1%})")
    cost = run["cost"]
    print(
        f"  shadow {cost['shadow_cpu_ms_p50']} ms CPU per part (p50; {cost['shadow_ms_p50']} ms frame to verdict); "
        f"production cycle p50 {cost['cycle_ms_p50_during']} ms "
        f"during the run, {cost['cycle_ms_p50_before']} ms over the {cost['parts_before']} parts before it"
    )
    for d in run["disagreement_list"][:10]:
        print(
            f"  inspection {d['inspection_id']}: production {d['production_verdict']}, shadow {d['verdict']}; differs: {d['differing']}"
        )
    return 0


def add_parsers(model: argparse._SubParsersAction) -> None:
    shadow = model.add_parser("shadow", help="a candidate judging live frames beside production")
    sub = shadow.add_subparsers(dest="shadow_command", required=True)

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument(
            "--config", required=True, help="the station.yaml whose storage.dir holds the store and the log"
        )
        parser.set_defaults(func=func)
        return parser

    start = command("start", "ask the station to shadow a version, bounded by parts and/or hours", cmd_start)
    start.add_argument(
        "version", nargs="?", default=None, help="alias or version id (default: model.shadow.version, candidate)"
    )
    start.add_argument(
        "--parts",
        type=_count,
        default=None,
        help="end after this many shadowed parts (0: no bound; default: model.shadow.parts, 200)",
    )
    start.add_argument(
        "--hours",
        type=_hours,
        default=None,
        help="end this long after the start (0: no bound; default: model.shadow.hours, 8)",
    )
    stop = command("stop", "end the shadow run the station has open", cmd_stop)
    for parser in (start, stop):
        parser.add_argument("--user", default=None, help="who is named as starting or stopping it (default: $USER)")
    state = command("status", "the newest shadow run: counts, agreement per check, disagreements, cost", cmd_status)
    state.add_argument("--json", action="store_true", help="print JSON")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 24 * 365:
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0..8760")
    return value
