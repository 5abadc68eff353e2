"""``edge-inspect bench``: per-stage latency of a recipe on each bundle / backend, side by side.

Each variant runs in its own process (so peak memory is its own): warm-up inspections first,
then timed ones on the same generated frames; medians per stage, p50/p95 per inspection.
A transformers reference row comes from the export toolchain, which writes rows of this layout.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .config import Recipe

log = logging.getLogger(__name__)

DEMO_RECIPE = {
    "number": 1, "name": "plate", "checks": [
        {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
        {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
        {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
    ]}  # fmt: skip
STAGES = ("preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "postprocess_ms")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def measure(bundle: str, providers: str, recipe: dict, frames: int, runs: int, warmup: int) -> dict:
    """Runs in the worker process."""
    from .inspector import Inspector
    from .sim import render_part
    from .vlm import load_bundle

    model = load_bundle(bundle, providers=providers)
    inspector = Inspector(model)
    r = Recipe.model_validate(recipe)
    images = [render_part(700_000 + i).image for i in range(frames)]
    for i in range(warmup):
        inspector.run(images[i % frames], r)
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    totals, tokens_per_s = [], []
    for i in range(runs):
        start = time.perf_counter()
        result = inspector.run(images[i % frames], r)
        total = (time.perf_counter() - start) * 1000
        t = result.timings_ms
        totals.append(total)
        model_ms = sum(t.get(s, 0.0) for s in STAGES[:4])
        for s in STAGES[:4]:
            per_stage[s].append(t.get(s, 0.0))
        per_stage["postprocess_ms"].append(max(0.0, total - model_ms))
        if t.get("decode_ms"):
            tokens_per_s.append(t["decode_tokens"] / (t["decode_ms"] / 1000))
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    return {
        "bundle": bundle, "backend": model.backend.name,
        "precision": {g: manifest["graphs"][g].get("precision", "fp32") for g in ("vision", "decoder")},
        "stages_ms": {s: statistics.median(v) for s, v in per_stage.items()},
        "decode_tokens_per_s": statistics.median(tokens_per_s) if tokens_per_s else None,
        "inspection_ms": {"p50": percentile(totals, 0.5), "p95": percentile(totals, 0.95),
                          "mean": statistics.fmean(totals)},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "runs": runs, "warmup": warmup,
    }


def _worker(args: dict) -> dict | str:
    """Run one measurement of this module in its own process; its JSON result, or why it failed."""
    done = subprocess.run([sys.executable, "-m", __name__, json.dumps(args)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit code {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bench(bundles: list[str], providers: str, frames: int, runs: int, warmup: int, json_path: str | None,
              recipe: dict | None = None) -> int:
    rows = []
    common = {"recipe": recipe or DEMO_RECIPE, "frames": frames, "runs": runs, "warmup": warmup}
    for bundle in bundles:
        result = _worker({"bundle": str(Path(bundle).resolve()), "providers": providers, **common})
        if isinstance(result, str):
            log.warning("bench of %s failed: %s", bundle, result)
            print(f"{bundle}: failed: {result}")
            continue
        rows.append(result)
    rows += _trt_rows()
    print_table(rows)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"rows": rows, "frames": frames, "runs": runs, "warmup": warmup,
                                               "statistic": "median per stage; p50/p95 per inspection"}, indent=2) + "\n")
        print(f"JSON: {json_path}")
    return 0 if rows else 1


def _trt_rows() -> list[dict]:
    """Native TensorRT is measured only where it is installed with a CUDA GPU."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return [{"bundle": "-", "backend": "tensorrt", "skipped": "tensorrt is not installed (no CUDA GPU here)"}]
    return [{"bundle": "-", "backend": "tensorrt", "skipped": "the bundles have no engines for this device yet"}]


def print_table(rows: list[dict]) -> None:
    base = next((r for r in rows if "inspection_ms" in r), None)
    header = (f"{'bundle':<28} {'backend':<22} {'vis/dec':<10} {'pre':>6} {'vision':>7} {'prefill':>8} {'decode':>7} "
              f"{'tok/s':>6} {'post':>6} {'p50':>7} {'p95':>7} {'vs 1st':>6} {'RSS MB':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "skipped" in r:
            print(f"{r['bundle']:<28} {r['backend']:<22} skipped: {r['skipped']}")
            continue
        s, p = r["stages_ms"], r["inspection_ms"]
        speed = base["inspection_ms"]["p50"] / p["p50"] if base else 1.0
        tps = f"{r['decode_tokens_per_s']:.0f}" if r["decode_tokens_per_s"] else "-"
        stages = (f"{s['preprocess_ms']:6.1f} {s['vision_ms']:7.1f} {s['prefill_ms']:8.1f} {s['decode_ms']:7.1f} {tps:>6} "
                  f"{s['postprocess_ms']:6.1f}") if s else f"{'-':>6} {'-':>7} {'-':>8} {'-':>7} {'-':>6} {'-':>6}"
        print(f"{Path(r['bundle']).name[:28]:<28} {r['backend'][:22]:<22} "
              f"{r['precision']['vision'] + '/' + r['precision']['decoder']:<10} {stages} "
              f"{p['p50']:7.1f} {p['p95']:7.1f} {speed:5.2f}x {r['peak_rss_mb']:7.0f}")


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(json.dumps(measure(args["bundle"], args["providers"], args["recipe"], args["frames"], args["runs"],
                             args["warmup"])))
