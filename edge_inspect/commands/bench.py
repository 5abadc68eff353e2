"""``edge-inspect bench``: per-stage latency of a recipe on each bundle / backend, side by side.

Each variant (a bundle at a decode-step thread count and spinning setting) runs in its own process,
so peak memory is its own; with ``--interleave`` all run in one process, inspections round-robin
over the variants so that a noisy machine slows them alike. Warm-up inspections first, then timed ones on the same
generated frames; medians per stage, p50/p95 per inspection.
Two paths per bundle, interleaved run by run so that load from other processes hits both alike:
``batched`` (the inspector: one prefill for all checks of a view, pointing prompts decoded
together) and ``one-by-one`` (the previous path: one prefill per check and the stepwise decode
loop, one embed run + one decoder run per token with the K/V as arrays in and out).
The decode step is timed on its own too (ms per generated token): stepwise, the bound loop with
one row, and the bound loop with every pointing prompt of the recipe as one batch.
Accuracy-gate reports (``verify --json``) given with ``--verify`` join the table by bundle path.
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

from ..config import Recipe

log = logging.getLogger(__name__)

DEMO_RECIPE = {
    "number": 1, "name": "plate", "checks": [
        {"name": "surface", "kind": "point", "prompt": "Point to any surface defects.", "max": 0},
        {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
        {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
    ]}  # fmt: skip
STEP_SAMPLES = 7
STAGES = ("preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "postprocess_ms")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def one_by_one(model, frame, recipe: Recipe, max_new_tokens: int = 96) -> dict[str, float]:
    """The previous inspection path (for the side-by-side figure): the image encoded once, then one
    prefill per check and the stepwise decode loop per pointing prompt. Returns its stage timings."""
    t = {"preprocess_ms": 0.0, "vision_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "decode_tokens": 0.0}
    image = model.encode(frame, order="bgr")
    t["preprocess_ms"], t["vision_ms"] = image.timings_ms["preprocess_ms"], image.timings_ms["vision_ms"]
    t["prefill_ms"] = image.timings_ms.get("image_prefill_ms", 0.0)
    for check in recipe.checks:
        start = time.perf_counter()
        step, _ = model.engine.prefill(image, check.question if check.kind == "qa" else check.prompt)
        t["prefill_ms"] += (time.perf_counter() - start) * 1000
        if check.kind == "qa":
            model.engine.yes_no(step.logits)
            continue
        start = time.perf_counter()
        tokens, _ = model.engine.greedy_stepwise(step, max_new_tokens)
        t["decode_ms"] += (time.perf_counter() - start) * 1000
        t["decode_tokens"] += len(tokens)
        model.tokenizer.decode(tokens, skip_special_tokens=True)
    return t


def decode_step_ms(model, frame, recipe: Recipe, tokens: int = 33, repeats: int = 7) -> dict[str, float | int]:
    """Median ms per generated token (the first token comes from the prefill and is not counted):
    stepwise loop, bound loop with one row, bound loop with all pointing prompts as one batch."""
    prompts = [c.prompt for c in recipe.checks if c.kind != "qa"] or ["Point to the screws."]
    image = model.encode(frame, order="bgr")
    engine = model.engine
    step, _ = engine.prefill(image, prompts[0])
    batch, _ = engine.prefill_batch(image, prompts)
    runs = {
        "stepwise_ms": lambda: engine.greedy_stepwise(step, tokens, stop_ids=()),
        "bound_ms": lambda: engine.greedy(step, tokens, stop_ids=()),
        "batched_per_token_ms": lambda: engine.greedy_batch(batch, tokens, stop_ids=()),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(repeats + 1):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            if i:  # the first round warms up
                times[name].append((time.perf_counter() - start) * 1000 / (tokens - 1))
    out: dict[str, float | int] = {k: statistics.median(v) for k, v in times.items()}
    out["batched_per_token_ms"] /= len(prompts)
    out["batch_rows"] = len(prompts)
    out["cached_tokens"] = step.cache.length
    return out


class _Variant:
    """One bundle at one decode-step thread count and spinning setting, loaded, with its timings so far."""

    def __init__(
        self, bundle: str, providers: str, backend: str, step_threads: int, spin: bool, recipe: Recipe, jump: bool
    ):
        from ..inspection.inspector import Inspector
        from ..vlm import load_bundle

        self.bundle, self.step_threads, self.spin, self.recipe = bundle, step_threads, spin, recipe
        self.model = load_bundle(bundle, providers=providers, backend=backend, step_threads=step_threads, spin=spin)
        self.model.engine.jump_forward = self.jump = jump
        self.pointing = sum(1 for c in recipe.checks if c.kind != "qa")
        self.steps_per_answer: list[float] = []  # decode steps (runs a row took part in) per pointing answer
        if backend == "tensorrt" and self.model.fallback_reason:
            raise SystemExit(f"TensorRT engines refused: {self.model.fallback_reason}")
        self.inspector = Inspector(self.model)
        self.per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
        self.totals: list[float] = []
        self.tokens_per_s: list[float] = []
        self.reference_totals: list[float] = []
        self.steps: list[dict[str, float | int]] = []  # decode_step_ms samples

    def warm(self, frame) -> None:
        self.inspector.run(frame, self.recipe)
        one_by_one(self.model, frame, self.recipe, self.inspector.max_new_tokens)

    def time_once(self, frame) -> None:
        """The previous path and the inspector on one frame, back to back."""
        start = time.perf_counter()
        one_by_one(self.model, frame, self.recipe, self.inspector.max_new_tokens)
        self.reference_totals.append((time.perf_counter() - start) * 1000)
        engine = self.model.engine
        before = engine.row_steps
        start = time.perf_counter()
        result = self.inspector.run(frame, self.recipe)
        total = (time.perf_counter() - start) * 1000
        if self.pointing:
            self.steps_per_answer.append((engine.row_steps - before) / self.pointing)
        t = result.timings_ms
        self.totals.append(total)
        for s in STAGES[:4]:
            self.per_stage[s].append(t.get(s, 0.0))
        self.per_stage["postprocess_ms"].append(max(0.0, total - sum(t.get(s, 0.0) for s in STAGES[:4])))
        if t.get("decode_ms"):
            self.tokens_per_s.append(t["decode_tokens"] / (t["decode_ms"] / 1000))

    def result(self, runs: int, warmup: int) -> dict:
        manifest = json.loads((Path(self.bundle) / "manifest.json").read_text())
        totals = self.totals
        return {
            "bundle": self.bundle,
            "backend": self.model.backend.name,
            "precision": {
                g: manifest["graphs"][g].get("precision", "fp32")
                for g in ("vision", "decoder", "decoder_step")
                if g in manifest["graphs"]
            },
            "step_graph": self.model.engine.step_graph,
            "jump_forward": self.jump,
            "steps_per_answer": statistics.fmean(self.steps_per_answer) if self.steps_per_answer else None,
            "step_threads": self.step_threads,
            "spin": self.spin,
            "stages_ms": {s: statistics.median(v) for s, v in self.per_stage.items()},
            "decode_tokens_per_s": statistics.median(self.tokens_per_s) if self.tokens_per_s else None,
            "inspection_ms": {
                "p50": percentile(totals, 0.5),
                "p95": percentile(totals, 0.95),
                "mean": statistics.fmean(totals),
            },
            "one_by_one_ms": {
                "p50": percentile(self.reference_totals, 0.5),
                "p95": percentile(self.reference_totals, 0.95),
            },
            "decode_step": {k: statistics.median(sample[k] for sample in self.steps) for k in self.steps[0]},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "runs": runs,
            "warmup": warmup,
        }


def measure(
    variants: list[tuple[str, int | None, bool | None, bool]],
    providers: str,
    recipe: dict,
    frames: int,
    runs: int,
    warmup: int,
    backend: str = "onnxruntime",
) -> list[dict]:
    """Runs in the worker process: each (bundle, decode-step threads, spinning) of ``variants`` loaded, then the
    inspections round-robin over them (variant 1 on frame i, variant 2 on frame i, ...), so that load
    from other processes hits them alike. With several variants, peak RSS is the process's, for all."""
    from ..sim import render_part
    from ..vlm.backends import DECODE_STEP_THREADS, SPIN_DURING_RUN

    r = Recipe.model_validate(recipe)
    loaded = [
        _Variant(
            bundle,
            providers,
            backend,
            DECODE_STEP_THREADS if threads is None else threads,
            SPIN_DURING_RUN if spin is None else spin,
            r,
            jump,
        )
        for bundle, threads, spin, jump in variants
    ]
    images = [render_part(700_000 + i).image for i in range(frames)]
    for i in range(warmup):
        for v in loaded:
            v.warm(images[i % frames])
    for i in range(runs):
        for v in loaded:
            v.time_once(images[i % frames])
    # the decode step alone: one sample of 7 repeats per variant, or 7 samples of 1 taken in turn
    for _ in range(1 if len(loaded) == 1 else STEP_SAMPLES):
        for v in loaded:
            v.steps.append(decode_step_ms(v.model, images[0], r, repeats=STEP_SAMPLES if len(loaded) == 1 else 1))
    rows = [v.result(runs, warmup) for v in loaded]
    for row in rows:
        row["interleaved"] = len(rows) > 1
    return rows


def _worker(args: dict) -> dict | str:
    """Run one measurement of this module in its own process; its JSON result, or why it failed."""
    done = subprocess.run(
        [sys.executable, "-m", __name__, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit code {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_verify(paths: list[str]) -> dict[str, dict]:
    """Accuracy-gate reports by resolved candidate bundle path."""
    reports = {}
    for path in paths:
        if not Path(path).is_file():
            print(f"{path}: no such verify report; its bundle shows '-'")
            continue
        report = json.loads(Path(path).read_text())
        reports[str(Path(report["candidate"]).resolve())] = {
            "passed": bool(report["passed"]),
            "reference": report.get("reference"),
            "report": str(path),
            "problems": report.get("problems", []),
        }
    return reports


def load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def run_bench(
    bundles: list[str],
    providers: str,
    frames: int,
    runs: int,
    warmup: int,
    json_path: str | None,
    recipe: dict | None = None,
    verify: list[str] | None = None,
    backend: str = "onnxruntime",
    step_threads: list[int] | None = None,
    interleave: bool = False,
    spin: list[bool] | None = None,
    jump_forward: list[bool] | None = None,
) -> int:
    """``step_threads``: decode-step thread counts to measure each bundle with (default: the runtime's).
    ``spin``: spinning settings of the worker threads to measure each bundle with (default: the runtime's).
    ``interleave``: every variant in one worker process, inspections round-robin (steadier ratios on a
    noisy machine; one peak RSS for all); otherwise each variant in its own process, one after another.
    ``jump_forward``: with and/or without jump-forward decoding of the forced tokens (default: with)."""
    rows: list[dict] = []
    load_before = load_average()
    common = {
        "recipe": recipe or DEMO_RECIPE,
        "frames": frames,
        "runs": runs,
        "warmup": warmup,
        "providers": providers,
        "backend": backend,
    }
    thread_options: list[int | None] = [*step_threads] if step_threads else [None]
    spin_options: list[bool | None] = [*spin] if spin else [None]
    variants = [
        (str(Path(bundle).resolve()), threads, on, jump)
        for bundle in dict.fromkeys(bundles)
        for threads in dict.fromkeys(thread_options)
        for on in dict.fromkeys(spin_options)
        for jump in dict.fromkeys(jump_forward or [True])
    ]
    for group in [variants] if interleave else [[v] for v in variants]:
        result = _worker({"variants": group, **common})
        if isinstance(result, str):
            names = ", ".join(Path(b).name for b, *_ in group)
            log.warning("bench of %s failed: %s", names, result)
            print(f"{names}: failed: {result}")
            continue
        rows += result
    reports = read_verify(verify or [])  # read after the timing: the gate may run alongside
    reference = rows[0]["bundle"] if rows else None
    for result in rows[1:]:  # the first bundle is the reference of the accuracy gate
        if result["bundle"] != reference:
            result["verify"] = reports.get(result["bundle"], {"passed": None})
    if backend == "onnxruntime":
        rows += _trt_rows()
    load = {"before": load_before, "after": load_average()}
    print_table(rows)
    print(f"load average (1/5/15 min) before {load['before']}, after {load['after']}")
    recommend(rows)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "frames": frames,
                    "runs": runs,
                    "warmup": warmup,
                    "load_average": load,
                    "statistic": "median per stage; p50/p95 per inspection",
                },
                indent=2,
            )
            + "\n"
        )
        print(f"JSON: {json_path}")
    return 0 if rows else 1


def _trt_rows() -> list[dict]:
    """Native TensorRT is measured only where it is installed with a CUDA GPU."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return [{"bundle": "-", "backend": "tensorrt", "skipped": "tensorrt is not installed (no CUDA GPU here)"}]
    return [{"bundle": "-", "backend": "tensorrt", "skipped": "the bundles have no engines for this device yet"}]


def _verify_cell(row: dict) -> str:
    v = row.get("verify")
    if v is None:
        return "ref"
    return {True: "pass", False: "FAIL", None: "-"}[v["passed"]]


def _precisions(row: dict) -> str:
    """vision/decoder graph/decode steps: the step graph's precision where it decodes, '-' where the
    bundle has none or the runtime did not use it (the decoder graph then decodes)."""
    p = row["precision"]
    step = p.get("decoder_step", "-") if row.get("step_graph", True) else "-"
    return f"{p['vision']}/{p['decoder']}/{step}"


def _spin_cell(row: dict) -> str:
    return "-" if row.get("spin") is None else "on" if row["spin"] else "off"


def _jump_cells(row: dict) -> str:
    steps = row.get("steps_per_answer")
    jump = "-" if row.get("jump_forward") is None else "on" if row["jump_forward"] else "off"
    return f"{jump:>3} {steps:6.1f}" if steps is not None else f"{jump:>3} {'-':>6}"


def print_table(rows: list[dict]) -> None:
    base = next((r for r in rows if "inspection_ms" in r), None)
    header = (
        f"{'bundle':<24} {'backend':<17} {'vis/dec/step':<15} {'thr':>3} {'spin':>4} {'jf':>3} {'st/ans':>6} {'pre':>5} {'vision':>6} {'prefill':>7} {'decode':>6} "
        f"{'tok/s':>5} {'post':>5} | {'1-by-1':>7} {'batched':>7} {'p95':>6} {'gain':>5} {'vs 1st':>6} | "
        f"{'step ms: stepwise':>17} {'bound':>6} {'batch/tok':>9} | {'verify':>6} {'RSS MB':>6}"
    )
    print(
        "inspection ms (p50 unless p95); stages: medians of the batched path; step ms: per generated token; "
        "thr: decode-step threads; spin: worker threads busy-wait during a run; jf: jump-forward decoding; "
        "st/ans: decode steps per pointing answer"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "skipped" in r:
            print(f"{r['bundle']:<24} {r['backend']:<17} skipped: {r['skipped']}")
            continue
        s, p = r["stages_ms"], r["inspection_ms"]
        ref = r.get("one_by_one_ms", {}).get("p50")
        speed = base["inspection_ms"]["p50"] / p["p50"] if base else 1.0
        tps = f"{r['decode_tokens_per_s']:.0f}" if r["decode_tokens_per_s"] else "-"
        stages = (
            (
                f"{s['preprocess_ms']:5.1f} {s['vision_ms']:6.1f} {s['prefill_ms']:7.1f} {s['decode_ms']:6.1f} {tps:>5} "
                f"{s['postprocess_ms']:5.1f}"
            )
            if s
            else f"{'-':>5} {'-':>6} {'-':>7} {'-':>6} {'-':>5} {'-':>5}"
        )
        st = r.get("decode_step") or {}
        steps = (
            f"{st['stepwise_ms']:17.3f} {st['bound_ms']:6.3f} {st['batched_per_token_ms']:9.3f}"
            if st
            else f"{'-':>17} {'-':>6} {'-':>9}"
        )
        refcell = f"{ref:7.1f}" if ref else f"{'-':>7}"
        gain = f"{ref / p['p50']:4.2f}x" if ref else f"{'-':>5}"
        print(
            f"{Path(r['bundle']).name[:24]:<24} {r['backend'][:17]:<17} "
            f"{_precisions(r):<15} {r.get('step_threads', '-'):>3} {_spin_cell(r):>4} {_jump_cells(r)} {stages} | "
            f"{refcell} {p['p50']:7.1f} {p['p95']:6.1f} {gain} {speed:5.2f}x | {steps} | "
            f"{_verify_cell(r):>6} {r['peak_rss_mb']:6.0f}"
        )


def recommend(rows: list[dict]) -> str | None:
    """The fastest variant that passed the accuracy gate, or the reference where none is faster.
    Bundles are compared at one decode-step thread count and spinning setting: the runtime's where
    they were measured."""
    from ..vlm.backends import DECODE_STEP_THREADS, SPIN_DURING_RUN

    measured = [r for r in rows if "inspection_ms" in r]
    if not measured:
        return None
    counts = [r.get("step_threads") for r in measured]
    threads = DECODE_STEP_THREADS if DECODE_STEP_THREADS in counts else counts[0]
    spins = [r.get("spin") for r in measured]
    spin = SPIN_DURING_RUN if SPIN_DURING_RUN in spins else spins[0]
    reference = measured[0]["bundle"]
    settings = len({(r.get("step_threads"), r.get("spin")) for r in measured}) > 1
    measured = [r for r in measured if r.get("step_threads") == threads and r.get("spin") == spin]
    jump = any(r.get("jump_forward", True) for r in measured)  # the runtime's default where measured
    measured = [r for r in measured if r.get("jump_forward", True) == jump]
    base = next((r for r in measured if r["bundle"] == reference), measured[0])
    passing = [r for r in measured if r is not base and (r.get("verify") or {}).get("passed")]
    best = min(passing, key=lambda r: r["inspection_ms"]["p50"], default=None)
    if best is None or best["inspection_ms"]["p50"] >= base["inspection_ms"]["p50"]:
        choice, why = base, "no variant that passed verify is faster: keep full precision"
    else:
        choice = best
        why = f"fastest variant that passed verify ({base['inspection_ms']['p50'] / best['inspection_ms']['p50']:.2f}x)"
    if settings:
        why += f"; compared at {threads} decode-step thread(s), spinning {'on' if spin else 'off'}"
    print(f"recommended: {choice['bundle']} ({why})")
    return choice["bundle"]


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(
        json.dumps(
            measure(
                [tuple(v) for v in args["variants"]],
                args["providers"],
                args["recipe"],
                args["frames"],
                args["runs"],
                args["warmup"],
                args.get("backend", "onnxruntime"),
            )
        )
    )
