"""The unfamiliar-frame guard, measured: ``python benchmarks/unfamiliar_guard.py [--bundle DIR]
[--reference 200] [--normal 1000] [--per-set 100] [--parts 40] [--threads 1] [--json PATH]``.

A reference is built for the demo recipe's view (the whole frame) by the code ``edge-inspect model
reference`` runs (station/references.py), from ``--reference`` frames of the synthetic camera (the
generator's own mix of parts, seeds from 1000). Then each set of frames is scored against it, as the
station scores a frame, and the share flagged is reported:

* normal: ``--normal`` further frames of the same camera (seeds from 200000): false alarms;
* wrong part: a round flange (``sim.foreign.flange``) and random scenes (``sim.foreign.random_scene``);
* covered lens: near-black, one flat tone, 40–70 % covered (``sim.foreign.covered``) over parts;
* each camera shift of the robustness suite (``tools/distill/evaluate.py`` SHIFTS) on parts of
  seeds 900000 on, and the same parts unmoved ("shift none"); the demo student's REPORT.md gives
  the model's own figures on the same shifts.

Cost: the pooling and the scoring alone (µs), and ``--parts`` inspections of the demo recipe with the
guard off and on, alternating on the same frames (the station's Inspector and Guard). Prints tables
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEMO_CHECKS = [
    {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
    {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
]


def frames_of(seed: int, n: int) -> list[np.ndarray]:
    from edge_inspect.camera.sources import SyntheticSource

    source = SyntheticSource(seed)
    return [source.read() for _ in range(n)]


def sets(args) -> dict[str, tuple[str, list[np.ndarray]]]:
    """name -> (group, frames)."""
    from edge_inspect.sim import render_part
    from edge_inspect.sim.foreign import covered, flange, random_scene
    from tools.distill.evaluate import SHIFTS

    n = args.per_set
    out: dict[str, tuple[str, list[np.ndarray]]] = {"normal": ("normal", frames_of(200_000, args.normal))}
    out["flange (another part)"] = ("wrong part", [flange(s) for s in range(n)])
    out["random scene"] = ("wrong part", [random_scene(s) for s in range(n)])
    for kind in ("black", "uniform", "partial"):
        out[f"covered: {kind}"] = ("covered lens", [covered(s, render_part(300_000 + s).image, kind) for s in range(n)])
    out["shift none"] = ("camera shift", [render_part(900_000 + s).image for s in range(n)])  # the same parts, unmoved
    for name, camera in SHIFTS.items():
        out[f"shift {name}"] = ("camera shift", [render_part(900_000 + s, camera=camera).image for s in range(n)])
    return out


def timed(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "models" / "demo-student"))
    parser.add_argument("--reference", type=int, default=200, help="commissioning frames")
    parser.add_argument("--normal", type=int, default=1000, help="normal frames scored for false alarms")
    parser.add_argument("--per-set", type=int, default=100, help="frames per wrong-part, covered and shift set")
    parser.add_argument("--parts", type=int, default=40, help="inspections timed with the guard off and on, each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="work/unfamiliar_guard.json")
    args = parser.parse_args()

    from edge_inspect.config import Recipe, UnfamiliarGuard
    from edge_inspect.inspection.inspector import Inspector
    from edge_inspect.station import references
    from edge_inspect.station.unfamiliar import Guard
    from edge_inspect.vlm import load_bundle
    from edge_inspect.vlm.features import pool_features

    model = load_bundle(args.bundle, threads=args.threads)
    recipe = Recipe.model_validate({"number": 1, "name": "demo", "checks": DEMO_CHECKS})
    data_dir = Path(tempfile.mkdtemp(prefix="unfamiliar-bench-"))
    start = time.perf_counter()
    ((_, ref),) = references.build(model, frames_of(1000, args.reference), [recipe], data_dir, "benchmark")
    build_s = time.perf_counter() - start
    view = ref.views["frame"]
    print(
        f"reference: {args.reference} frames in {build_s:.1f} s; threshold {view.threshold:.2f} "
        f"(held-out median {view.holdout[0]:.2f}, p99 {view.holdout[1]:.2f}, max {view.holdout[2]:.2f}; "
        f"shrinkage {view.shrinkage:.3f})"
    )

    rows = []
    for name, (group, frames) in sets(args).items():
        scores = np.array([view.score(model.encode(f, order="bgr", reuse_prefix=False).pooled) for f in frames])
        flagged = int((scores > view.threshold).sum())
        rows.append({
            "set": name, "group": group, "frames": len(frames), "flagged": flagged, "rate": flagged / len(frames),
            "median_score": float(np.median(scores)), "min_score": float(scores.min()), "max_score": float(scores.max()),
        })  # fmt: skip
        print(
            f"  {name:<24} {flagged:>5}/{len(frames):<5} {flagged / len(frames):7.1%}  median score {np.median(scores):8.2f}"
        )

    # cost: the pooling and the scoring alone, then whole inspections with the guard off and on
    sample = model.encode(frames_of(7, 1)[0], order="bgr", reuse_prefix=False)
    pool_us = timed(lambda: pool_features(sample.features, sample.inputs.grid), 2000)
    score_us = timed(lambda: view.score(sample.pooled), 2000)
    inspector = Inspector(model, max_new_tokens=96)
    guard = Guard(UnfamiliarGuard(), data_dir)
    guard.load(model.sha256, [recipe])
    off, on = [], []
    for i, frame in enumerate(frames_of(400_000, args.parts)):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
            t0 = time.perf_counter()
            inspection = inspector.run(frame, recipe)
            if mode == "on":
                guard.judge(recipe, inspection, model.sha256, [recipe])
            (on if mode == "on" else off).append((time.perf_counter() - t0) * 1000)
    p95 = lambda v: float(np.percentile(v, 95))  # noqa: E731
    cost = {
        "pool_us": pool_us, "score_us": score_us, "parts": args.parts,
        "inspection_ms_off": {"median": statistics.median(off), "p95": p95(off)},
        "inspection_ms_on": {"median": statistics.median(on), "p95": p95(on)},
    }  # fmt: skip
    print(f"\ncost: pooling {pool_us:.1f} µs, scoring {score_us:.1f} µs per view")
    print(f"  inspection (demo recipe, {args.parts} parts each, alternating): guard off median "
          f"{cost['inspection_ms_off']['median']:.1f} ms (p95 {cost['inspection_ms_off']['p95']:.1f}), on median "
          f"{cost['inspection_ms_on']['median']:.1f} ms (p95 {cost['inspection_ms_on']['p95']:.1f})")  # fmt: skip

    print("\n| set | group | frames | flagged | rate | median score |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['group']} | {r['frames']} | {r['flagged']} | {r['rate']:.1%} | {r['median_score']:.1f} |"
        )
    report = {
        "bundle": args.bundle, "threads": args.threads, "reference_frames": args.reference,
        "reference_build_s": build_s, "threshold": view.threshold, "holdout": list(view.holdout),
        "shrinkage": view.shrinkage, "sets": rows, "cost": cost,
    }  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
