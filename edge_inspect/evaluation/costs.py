"""What judging a part costs a model on this machine: latency per part, timed with two versions
alternating part by part (side by side, so the machine's load falls on both alike), and the memory a
process needs to load a version and judge parts, measured in a process of its own
(``python -m edge_inspect.evaluation.costs BUNDLE``)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np

from .evaluate import BundlePredictor
from .records import Record, sim_records
from .tasks import TASKS


def _judge(predictor: BundlePredictor, records: Sequence[Record]) -> None:
    for rec in records:
        rgb = rec.rgb() if rec.image is None else rec.image
        if rec.kind == "point":
            predictor.point(rgb, rec.prompt)
        else:
            predictor.yes_no_scores(rgb, rec.prompt)


def by_part(records: list[Record]) -> list[list[Record]]:
    """Records grouped by their image (a part's questions), in order."""
    parts: list[list[Record]] = []
    for rec in records:
        last = parts[-1][0] if parts else None
        same = last is not None and (
            last.image is rec.image if rec.image is not None else last.image_path == rec.image_path
        )
        if same:
            parts[-1].append(rec)
        else:
            parts.append([rec])
    return parts


def time_parts(
    predictors: dict[str, BundlePredictor], parts: list[list[Record]], repeats: int = 3
) -> dict[str, list[float]]:
    """Milliseconds per part (the frame encoded, then every question) for each predictor: each part
    ``repeats`` times per predictor, the order alternating, and the fastest kept — what the model
    needs, not what another process on the machine took from it meanwhile. One warm-up part first."""
    names = list(predictors)
    for predictor in predictors.values():
        _judge(predictor, parts[0])
        predictor.forget()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, part in enumerate(parts):
        best = {name: float("inf") for name in names}
        for r in range(repeats):
            for name in names if (i + r) % 2 == 0 else names[::-1]:
                predictor = predictors[name]
                predictor.forget()  # each part's frame is encoded, as on the line
                start = time.perf_counter()
                _judge(predictor, part)
                best[name] = min(best[name], (time.perf_counter() - start) * 1000)
                predictor.forget()
        for name in names:
            times[name].append(best[name])
    return times


def percentiles(ms: list[float]) -> dict[str, float | int]:
    a = np.asarray(ms, float)
    return {
        "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()), "parts": len(ms),
    }  # fmt: skip


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def measure_memory(bundle: str, parts: int, first_seed: int, threads: int) -> dict[str, float]:
    """In this process: the resident memory before the model is loaded, the peak after it judged
    ``parts`` generated parts, and the difference (what the model costs)."""
    import onnxruntime  # noqa: F401  (the runtime's own code is not the model's cost)

    records = sim_records(range(first_seed, first_seed + parts), list(TASKS))
    before = _rss_mb()
    predictor = BundlePredictor(bundle, threads=threads)
    _judge(predictor, records)
    peak = _peak_mb()
    return {"rss_before_mb": before, "peak_rss_mb": peak, "model_mb": peak - before}


def _peak_mb() -> float:
    """This process's peak resident memory: VmHWM, which exec starts afresh (getrusage's ru_maxrss
    keeps the parent's peak across fork and exec: the gate's own would be counted)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e3  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="memory of one model version judging generated parts (JSON)")
    parser.add_argument("bundle")
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=900_000)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(measure_memory(args.bundle, args.parts, args.first_seed, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
