"""Latency benchmark: this engine vs transformers ``generate``, and prefix reuse vs full prefill.

Both sides see the same checkpoint, the same images and produce the same number of tokens
(greedy, no early stop). Each figure is the median of ``repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from edge_inspect.vlm import load_bundle
from tools.molmo2.checkpoint import load_checkpoint
from tools.molmo2.tiny import make_tiny_checkpoint

from .example import draw_part
from .hf_reference import HFImageProcessor, hf_inputs
from .onnx_bundle import export_bundle

RECIPE = [
    ("point", "Point to any scratches."),
    ("point", "Point to the screws."),
    ("yes_no", "Is the label present?"),
    ("yes_no", "Is the part clean?"),
]
IMAGE_SIZES = [(240, 320), (480, 640), (600, 400)]


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run_bench(work: Path, json_path: Path, repeats: int = 5, max_new_tokens: int = 16, size: str = "small") -> int:
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_tiny_checkpoint(work / f"checkpoint-{size}", size=size)
    bundle_dir = export_bundle(checkpoint, work / f"bundle-{size}", overwrite=True)
    model = load_bundle(bundle_dir)
    engine = model.engine
    hf = load_checkpoint(checkpoint)
    processor = HFImageProcessor.from_checkpoint(checkpoint)

    rows = []
    for height, width in IMAGE_SIZES:
        frame = draw_part(height, width)
        rgb = frame[:, :, ::-1].copy()
        question = "Point to the screws."

        def ours(rgb=rgb, question=question) -> list[int]:
            image = model.encode(rgb)
            step, _ = engine.prefill(image, question)
            return engine.greedy(step, max_new_tokens, stop_ids=())[0]

        def theirs(rgb=rgb, question=question) -> list[int]:
            inputs = hf_inputs(processor, rgb, engine, question)
            with torch.no_grad():
                out = hf.generate(**inputs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                  do_sample=False, eos_token_id=None)
            return out[0, inputs["input_ids"].shape[1]:].tolist()

        same = ours() == theirs()

        def recipe(reuse: bool, rgb=rgb) -> Callable[[], None]:
            def run() -> None:
                image = model.encode(rgb, reuse_prefix=reuse)
                for kind, prompt in RECIPE:
                    step, _ = engine.prefill(image, prompt)
                    if kind == "point":
                        engine.greedy(step, max_new_tokens, stop_ids=())
                    else:
                        engine.yes_no(step.logits)
            return run

        grid = model.encode(rgb).inputs
        rows.append({
            "image": f"{width}x{height}", "crops": int(grid.pixel_values.shape[0]), "image_tokens": grid.num_tokens,
            "engine_ms": _median_ms(ours, repeats), "transformers_ms": _median_ms(theirs, repeats),
            "same_tokens": same,
            "recipe_reuse_ms": _median_ms(recipe(True), repeats), "recipe_no_reuse_ms": _median_ms(recipe(False), repeats),
        })  # fmt: skip

    report = {
        "model": {"checkpoint": str(checkpoint), "size": size, "parameters": sum(p.numel() for p in hf.parameters())},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads()},
        "settings": {"repeats": repeats, "new_tokens": max_new_tokens, "recipe": RECIPE, "statistic": "median ms"},
        "rows": rows,
    }  # fmt: skip
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")

    header = f"{'image':>8} {'crops':>5} {'tokens':>6} | {'engine':>8} {'transformers':>12} {'speed-up':>8} {'same':>5} | {'recipe reuse':>12} {'no reuse':>9} {'speed-up':>8}"
    print(f"per-inspection latency, median of {repeats} (ms), {max_new_tokens} new tokens; recipe = 2 point + 2 yes/no prompts")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['image']:>8} {r['crops']:>5} {r['image_tokens']:>6} | {r['engine_ms']:8.1f} {r['transformers_ms']:12.1f} "
              f"{r['transformers_ms'] / r['engine_ms']:7.2f}x {str(r['same_tokens']):>5} | "
              f"{r['recipe_reuse_ms']:12.1f} {r['recipe_no_reuse_ms']:9.1f} {r['recipe_no_reuse_ms'] / r['recipe_reuse_ms']:7.2f}x")
    print(f"JSON: {json_path}")
    return 0 if all(r["same_tokens"] for r in rows) else 1

