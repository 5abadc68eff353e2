"""A GenICam camera unplugged and plugged in again under a running station, many times:
``python benchmarks/camera_faults.py [--rounds 20] [--parts 2] [--json out.json]``.

The camera is Aravis' GigE Vision fake on loopback (GVCP and GVSP over UDP), software-triggered on
the PLC's trigger; a simulated PLC drives the Modbus TCP handshake; the model is the demo student.
Each round stops the camera, waits for `camera_lost`, starts a camera with the same serial again,
waits for `ready`, and inspects ``--parts`` parts. Prints per-round figures and a summary (camera
lost after, back after, inspections that failed, frames taken before their trigger, frames inspected
twice, the config's gain found on the camera again) and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--parts", type=int, default=2, help="inspections after each reconnect")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "demo-student")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from tests.support.camera_faults import GAIN, run_rounds
    from tests.support.genicam_fake import aravis_or_skip

    aravis = aravis_or_skip()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        run = run_rounds(aravis, Path(folder), args.bundle, args.rounds, args.parts)
    wall = time.monotonic() - started
    print(f"{'round':>5} {'lost after s':>12} {'ready low':>9} {'back after s':>12} {'gain':>5} results")
    for n, r in enumerate(run.rounds, 1):
        print(
            f"{n:>5} {r.lost_after_s:>12.2f} {r.ready_low!s:>9} {r.back_after_s:>12.2f} {r.gain_after:>5.0f} {r.results}"
        )
    lost = [r.lost_after_s for r in run.rounds]
    back = [r.back_after_s for r in run.rounds]
    summary = {
        "rounds": len(run.rounds), "inspections": len(run.rows),
        "failed_inspections": sum(1 for row in run.rows if row[1]),
        "lost_after_s": {"p50": statistics.median(lost), "max": max(lost)},
        "back_after_s": {"p50": statistics.median(back), "max": max(back)},
        "ready_low_every_round": all(r.ready_low for r in run.rounds),
        "gain_reapplied_every_round": all(r.gain_after == GAIN for r in run.rounds),
        "stale_frames": run.stale, "frames_inspected_twice": run.repeated, "wall_s": wall,
    }  # fmt: skip
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": [asdict(r) for r in run.rounds]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
