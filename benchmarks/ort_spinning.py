"""ONNX Runtime worker threads spinning or sleeping, on idle cores and beside busy processes, in one
run: ``python benchmarks/ort_spinning.py [--bundle DIR] [--rounds 20] [--busy 1]``.

The vision and image-prefill inputs of one inspection of a generated part are captured, then each
graph runs in one session per setting (spinning off; spinning during the Run; bounded spins), the
sessions in turn, first with nothing else running and then beside ``--busy`` processes that each
keep a core busy. Every session stops spinning when its Run returns (``session.force_spinning_stop``),
so the settings do not take CPU from each other between runs; a last measurement shows what that
stop is for: the CPU a spinning session without it uses after its Run. Prints a table of median ms
and the CPU the process used in the 20 ms after a Run, and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name: (spinning, further session config entries)
SETTINGS: dict[str, tuple[bool, dict[str, str]]] = {
    "off": (False, {}),
    "on": (True, {}),
    "on, 20 us": (True, {"session.intra_op.spin_duration_us": "20"}),
    "on, 100 us": (True, {"session.intra_op.spin_duration_us": "100"}),
    "on, 500 us": (True, {"session.intra_op.spin_duration_us": "500"}),
    "on, backoff 8": (True, {"session.intra_op.spin_backoff_max": "8"}),
}
LABELS = {"vision": "vision", "decoder": "image prefill"}
GRAPHS = ("vision", "decoder")


def capture_inputs(bundle: str) -> dict[str, dict]:
    """The feeds of the vision graph and of the image-prefix prefill for one generated part."""
    from edge_inspect.sim import render_part
    from edge_inspect.vlm import load_bundle

    model = load_bundle(bundle)
    captured: dict[str, dict] = {}
    run = model.backend.run

    def recording(graph, feeds):
        captured.setdefault(graph, {k: v.copy() for k, v in feeds.items()})
        return run(graph, feeds)

    model.backend.run = recording
    model.encode(render_part(700_000).image, order="bgr")
    missing = [g for g in GRAPHS if g not in captured]
    if missing:
        raise SystemExit(f"{bundle}: the inspection did not run {', '.join(missing)} through run()")
    return {g: captured[g] for g in GRAPHS}


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def measure(bundle: str, feeds: dict[str, dict], rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """{graph: {setting: {"ms": median Run, "cpu_after_ms": median CPU in the 20 ms after a Run}}}."""
    import onnxruntime as ort

    from edge_inspect.vlm.backends import session_options

    out: dict[str, dict[str, dict[str, float]]] = {}
    for graph in GRAPHS:
        sessions = {}
        for name, (spin, entries) in SETTINGS.items():
            options = session_options(ort, 0, spin=spin)
            for key, value in entries.items():
                options.add_session_config_entry(key, value)
            sessions[name] = ort.InferenceSession(
                str(Path(bundle) / f"{graph}.onnx"), options, providers=["CPUExecutionProvider"]
            )
        for session in sessions.values():
            session.run(None, feeds[graph])
        times: dict[str, list[float]] = {n: [] for n in sessions}
        after: dict[str, list[float]] = {n: [] for n in sessions}
        for _ in range(rounds):
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run(None, feeds[graph])
                times[name].append((time.perf_counter() - start) * 1000)
                cpu = time.process_time()
                time.sleep(0.02)
                after[name].append((time.process_time() - cpu) * 1000)
        out[graph] = {
            n: {"ms": round(statistics.median(times[n]), 2), "cpu_after_ms": round(statistics.median(after[n]), 2)}
            for n in sessions
        }
    return out


def cpu_after_run_without_stop(bundle: str, feeds: dict[str, dict], rounds: int) -> float:
    """Median CPU ms in the 20 ms after a vision Run of a spinning session without the forced stop
    (measured alone: its idle workers would take CPU from the other settings' runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    session = ort.InferenceSession(str(Path(bundle) / "vision.onnx"), options, providers=["CPUExecutionProvider"])
    after = []
    for _ in range(rounds):
        session.run(None, feeds["vision"])
        cpu = time.process_time()
        time.sleep(0.02)
        after.append((time.process_time() - cpu) * 1000)
    return round(statistics.median(after), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "models" / "demo-student"))
    parser.add_argument("--rounds", type=int, default=20, help="runs of each setting per phase")
    parser.add_argument("--busy", type=int, default=1, help="processes keeping a core busy in the second phase")
    parser.add_argument("--json", default="work/ort_spinning.json")
    args = parser.parse_args()
    feeds = capture_inputs(args.bundle)
    report = {
        "bundle": args.bundle,
        "rounds": args.rounds,
        "busy_processes": args.busy,
        "idle": measure(args.bundle, feeds, args.rounds),
    }
    stop_at = time.time() + 3600
    busy = [mp.get_context("spawn").Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    try:
        report["busy"] = measure(args.bundle, feeds, args.rounds)
    finally:
        for p in busy:
            p.terminate()
    report["cpu_after_run_without_stop_ms"] = cpu_after_run_without_stop(args.bundle, feeds, args.rounds)
    print(f"median ms per Run (CPU ms used in the 20 ms after it); busy = beside {args.busy} busy process(es)")
    print(
        f"{'setting':<14} " + " ".join(f"{LABELS[g] + ', ' + phase:>24}" for phase in ("idle", "busy") for g in GRAPHS)
    )
    for name in SETTINGS:
        cells = [report[phase][g][name] for phase in ("idle", "busy") for g in GRAPHS]
        print(f"{name:<14} " + " ".join(f"{c['ms']:>15.2f} ({c['cpu_after_ms']:5.1f})" for c in cells))
    print(
        f"spinning without session.force_spinning_stop: {report['cpu_after_run_without_stop_ms']} ms of CPU "
        "in the 20 ms after a vision Run"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
