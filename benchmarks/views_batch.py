"""A part seen by several cameras: their views through the vision graph in one batched run, or one
after the other, measured side by side in one run:
``python benchmarks/views_batch.py [--bundle DIR] [--views 2] [--rounds 30] [--threads 1] [--json OUT]``.

Each view is a generated part of its own (another seed; the cameras' sizes as ``--sizes``). Per
round, in turn (the order alternating): the views' encodings one after the other
(``VisionLanguageModel.encode`` each) and in one run (``encode_many``: the crops stacked, one vision
run, then each view's image prefix); then a whole inspection of a recipe with two yes/no checks and a
count on each view, with the inspector's ``batch_views`` off and on. Prints the medians and their
ratio, checks that both give the same features and the same answers, and writes JSON. The station
uses the batched run only where this measures it faster (edge_inspect/inspection/inspector.py
BATCH_VIEWS, docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHECKS = [
    {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
    {"name": "screws", "kind": "count", "prompt": "Point to the screws.", "expected": 4},
]


def _recipe(views: list[str]):
    from edge_inspect.config import Recipe

    checks = [dict(c, name=f"{c['name']}-{v}", view=v) for v in views for c in CHECKS]
    return Recipe.model_validate({"number": 1, "name": "views", "checks": checks})


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def measure(bundle: str, n_views: int, sizes: list[tuple[int, int]], rounds: int, threads: int) -> dict:
    import numpy as np

    from edge_inspect.inspection.inspector import Inspector
    from edge_inspect.sim import render_part
    from edge_inspect.vlm import load_bundle

    model = load_bundle(bundle, threads=threads)
    names = [f"cam{i + 1}" for i in range(n_views)]
    frames = {n: render_part(800_000 + i, *sizes[i % len(sizes)]).image for i, n in enumerate(names)}
    images = list(frames.values())
    recipe = _recipe(names)
    one_by_one, batched = Inspector(model, 48, batch_views=False), Inspector(model, 48, batch_views=True)

    # the same features and answers either way
    alone = [model.encode(f, order="bgr") for f in images]
    together = model.encode_many(images, order="bgr")
    feature_diff = max(float(np.abs(a.features - b.features).max()) for a, b in zip(alone, together, strict=True))
    a, b = one_by_one.run_part(frames, recipe, names[0]), batched.run_part(frames, recipe, names[0])
    same_answers = [(o.status, o.counted, o.p_yes) for o in a.outcomes] == [
        (o.status, o.counted, o.p_yes) for o in b.outcomes
    ]

    series: dict[str, list[float]] = {
        k: []
        for k in ("vision_sequential", "vision_batched", "encode_sequential", "encode_batched", "part_sequential",
                  "part_batched")
    }  # fmt: skip

    def encodings(key: str, encode) -> None:
        t0 = time.perf_counter()
        encoded = encode()
        series[key].append((time.perf_counter() - t0) * 1000)
        series[key.replace("encode", "vision")].append(sum(e.timings_ms["vision_ms"] for e in encoded))

    for _ in range(3):  # warm-up
        model.encode_many(images, order="bgr")
        [model.encode(f, order="bgr") for f in images]
    for r in range(rounds):
        runs = [
            lambda: encodings("encode_sequential", lambda: [model.encode(f, order="bgr") for f in images]),
            lambda: encodings("encode_batched", lambda: model.encode_many(images, order="bgr")),
            lambda: series["part_sequential"].append(_ms(lambda: one_by_one.run_part(frames, recipe, names[0]))),
            lambda: series["part_batched"].append(_ms(lambda: batched.run_part(frames, recipe, names[0]))),
        ]
        if r % 2:
            runs = [runs[1], runs[0], runs[3], runs[2]]
        for run in runs:
            run()
    med = {k: statistics.median(v) for k, v in series.items()}
    p90 = {k: sorted(v)[int(0.9 * (len(v) - 1))] for k, v in series.items()}
    return {
        "bundle": str(bundle), "views": n_views, "sizes": [list(sizes[i % len(sizes)]) for i in range(n_views)],
        "rounds": rounds, "threads": threads, "median_ms": med, "p90_ms": p90,
        "vision_ratio": med["vision_batched"] / med["vision_sequential"],
        "encode_ratio": med["encode_batched"] / med["encode_sequential"],
        "part_ratio": med["part_batched"] / med["part_sequential"],
        "max_feature_diff": feature_diff, "same_answers": same_answers,
    }  # fmt: skip


def table(result: dict) -> str:
    med, p90 = result["median_ms"], result["p90_ms"]
    rows = [
        "| what | one after the other, median (p90) ms | batched, median (p90) ms | batched / one after the other |",
        "|---|---|---|---|",
    ]
    for label, key, ratio in (("vision graph of the views", "vision", "vision_ratio"),
                              ("preprocessing, vision and image prefix of the views", "encode", "encode_ratio"),
                              ("whole inspection of the part", "part", "part_ratio")):  # fmt: skip
        rows.append(
            f"| {label} | {med[f'{key}_sequential']:.1f} ({p90[f'{key}_sequential']:.1f}) | "
            f"{med[f'{key}_batched']:.1f} ({p90[f'{key}_batched']:.1f}) | {result[ratio]:.2f} |"
        )
    rows.append(
        f"\n{result['views']} views ({', '.join('x'.join(map(str, s)) for s in result['sizes'])}), "
        f"{result['rounds']} rounds, {result['threads']} thread(s); largest feature difference "
        f"{result['max_feature_diff']:.2g}, same answers: {result['same_answers']}"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "models" / "demo-student"))
    parser.add_argument("--views", type=int, default=2, choices=range(2, 9))
    parser.add_argument("--sizes", default="640x480", help="each camera's frame size, in turn: 640x480,320x240")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="the model's threads (0: ONNX Runtime's choice)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sizes = [(int(w), int(h)) for w, h in (s.split("x") for s in args.sizes.split(","))]
    result = measure(args.bundle, args.views, sizes, args.rounds, args.threads)
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
