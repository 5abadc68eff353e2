"""Latency benchmark: this engine vs transformers ``generate``, prefix reuse vs full prefill, and the
batched recipe path vs the previous one-by-one path, side by side in one run.

All sides see the same checkpoint, the same images and produce the same number of tokens
(greedy, no early stop). Each figure is the median of ``repeats`` runs after one warm-up run; the
candidates of a row run round-robin (one run of each in turn), so load from other processes on a
shared machine hits them alike.

Paths: ``engine`` = prefill + the bound decode loop (I/O binding, preallocated K/V, table
embeddings); ``stepwise`` = prefill + the previous loop (embed graph + decoder per token, K/V as
arrays in and out). Recipe (2 pointing + 2 yes/no prompts on one image): ``batched`` = one image
encoding with prefix reuse, one prefill for all four prompts, pointing rows decoded together;
``reuse`` / ``no reuse`` = the previous path, one prefill per prompt (with / without the image-prefix
KV), stepwise decoding; ``transformers`` = one ``generate`` per pointing prompt and one forward
per yes/no prompt, each from the image. ``grammar`` / ``grammar jump`` = the batched recipe with the
pointing answers decoded in the pointing grammar, without / with jump-forward (forced tokens appended
without sampling, fed in one run): ms, decode steps per pointing answer, same answers.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each function, run round-robin after one warm-up round."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(v) for name, v in times.items()}


def run_bench(work: Path, json_path: Path, repeats: int = 5, max_new_tokens: int = 16, size: str = "small") -> int:
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_tiny_checkpoint(work / f"checkpoint-{size}", size=size)
    bundle_dir = export_bundle(checkpoint, work / f"bundle-{size}", overwrite=True)
    model = load_bundle(bundle_dir)
    engine = model.engine
    hf = load_checkpoint(checkpoint)
    processor = HFImageProcessor.from_checkpoint(checkpoint)

    rows: list[dict[str, Any]] = []  # the JSON report's rows
    for height, width in IMAGE_SIZES:
        frame = draw_part(height, width)
        rgb = frame[:, :, ::-1].copy()
        question = "Point to the screws."

        def ours(rgb=rgb, question=question) -> list[int]:
            image = model.encode(rgb)
            step, _ = engine.prefill(image, question)
            return engine.greedy(step, max_new_tokens, stop_ids=())[0]

        def stepwise(rgb=rgb, question=question) -> list[int]:
            image = model.encode(rgb)
            step, _ = engine.prefill(image, question)
            return engine.greedy_stepwise(step, max_new_tokens, stop_ids=())[0]

        def theirs(rgb=rgb, question=question) -> list[int]:
            inputs = hf_inputs(processor, rgb, engine, question)
            with torch.no_grad():
                out = hf.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=None,
                )
            return out[0, inputs["input_ids"].shape[1] :].tolist()

        same = ours() == theirs() == stepwise()

        def recipe(reuse: bool, rgb=rgb) -> Callable[[], None]:
            def run() -> None:
                image = model.encode(rgb, reuse_prefix=reuse)
                for kind, prompt in RECIPE:
                    step, _ = engine.prefill(image, prompt)
                    if kind == "point":
                        engine.greedy_stepwise(step, max_new_tokens, stop_ids=())
                    else:
                        engine.yes_no(step.logits)

            return run

        def recipe_batched(rgb=rgb) -> list[list[int]]:
            image = model.encode(rgb)
            batch, _ = engine.prefill_batch(image, [prompt for _, prompt in RECIPE])
            rows = [i for i, (kind, _) in enumerate(RECIPE) if kind == "point"]
            for i, (kind, _) in enumerate(RECIPE):
                if kind == "yes_no":
                    engine.yes_no(batch.logits[i])
            return engine.greedy_batch(batch, max_new_tokens, stop_ids=(), rows=rows)[0]

        def recipe_transformers(rgb=rgb) -> None:
            for kind, prompt in RECIPE:
                inputs = hf_inputs(processor, rgb, engine, prompt)
                with torch.no_grad():
                    if kind == "point":
                        hf.generate(
                            **inputs,
                            max_new_tokens=max_new_tokens,
                            min_new_tokens=max_new_tokens,
                            do_sample=False,
                            eos_token_id=None,
                        )
                    else:
                        hf(**inputs)

        def recipe_constrained(jump: bool, rgb=rgb) -> Callable[[], list[str]]:
            def run() -> list[str]:
                engine.jump_forward = jump
                image = model.encode(rgb)
                points = [prompt for kind, prompt in RECIPE if kind == "point"]
                questions = [prompt for kind, prompt in RECIPE if kind == "yes_no"]
                return [p.text for p in model.ask(image, questions, points, max(max_new_tokens, 40)).pointing]

            return run

        steps: dict[bool, float] = {}
        answers: dict[bool, list[str]] = {}
        for jump in (False, True):
            before = engine.row_steps
            answers[jump] = recipe_constrained(jump)()
            steps[jump] = (engine.row_steps - before) / len(answers[jump])
        engine.jump_forward = True

        image = model.encode(rgb)
        batched_tokens = recipe_batched()
        same_recipe = all(
            batched_tokens[i]
            == engine.greedy_stepwise(engine.prefill(image, prompt)[0], max_new_tokens, stop_ids=())[0]
            for i, (kind, prompt) in enumerate(RECIPE)
            if kind == "point"
        )
        single = _interleaved_ms({"engine_ms": ours, "stepwise_ms": stepwise, "transformers_ms": theirs}, repeats)
        recipes = _interleaved_ms(
            {
                "recipe_batched_ms": recipe_batched,
                "recipe_reuse_ms": recipe(True),
                "recipe_no_reuse_ms": recipe(False),
                "recipe_transformers_ms": recipe_transformers,
                "recipe_grammar_ms": recipe_constrained(False),
                "recipe_grammar_jump_ms": recipe_constrained(True),
            },
            repeats,
        )
        engine.jump_forward = True
        grid = image.inputs
        rows.append({
            "image": f"{width}x{height}", "crops": int(grid.pixel_values.shape[0]), "image_tokens": grid.num_tokens,
            **single, "same_tokens": same, **recipes, "same_recipe_tokens": same_recipe,
            "stages_ms": {k: round(v, 2) for k, v in image.timings_ms.items()},
            "grammar_steps_per_answer": steps[False], "grammar_jump_steps_per_answer": steps[True],
            "same_grammar_answers": answers[False] == answers[True],
        })  # fmt: skip

    report = {
        "model": {"checkpoint": str(checkpoint), "size": size, "parameters": sum(p.numel() for p in hf.parameters())},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads()},
        "settings": {"repeats": repeats, "new_tokens": max_new_tokens, "recipe": RECIPE, "statistic": "median ms"},
        "load_average": {"after": list(os.getloadavg())},
        "rows": rows,
    }  # fmt: skip
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")

    print(
        f"per-inspection latency, median of {repeats} (ms), {max_new_tokens} new tokens; "
        "recipe = 2 point + 2 yes/no prompts on one image"
    )
    header = (
        f"{'image':>8} {'crops':>5} {'tokens':>6} | {'engine':>7} {'stepwise':>8} {'transformers':>12} "
        f"{'vs HF':>6} {'same':>5} | {'batched':>7} {'reuse':>7} {'no reuse':>8} {'HF':>7} "
        f"{'batched/no reuse':>16} {'reuse/no reuse':>14} {'batched/HF':>10} {'same':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['image']:>8} {r['crops']:>5} {r['image_tokens']:>6} | {r['engine_ms']:7.1f} {r['stepwise_ms']:8.1f} "
            f"{r['transformers_ms']:12.1f} {r['transformers_ms'] / r['engine_ms']:5.2f}x {str(r['same_tokens']):>5} | "
            f"{r['recipe_batched_ms']:7.1f} {r['recipe_reuse_ms']:7.1f} {r['recipe_no_reuse_ms']:8.1f} "
            f"{r['recipe_transformers_ms']:7.1f} {r['recipe_no_reuse_ms'] / r['recipe_batched_ms']:15.2f}x "
            f"{r['recipe_no_reuse_ms'] / r['recipe_reuse_ms']:13.2f}x "
            f"{r['recipe_transformers_ms'] / r['recipe_batched_ms']:9.2f}x {str(r['same_recipe_tokens']):>5}"
        )
    print("grammar-constrained recipe (pointing answers in the pointing grammar): without / with jump-forward")
    print(f"{'image':>8} | {'ms':>7} {'jump ms':>7} | {'steps/answer':>12} {'jump':>6} {'fewer':>6} | {'same':>5}")
    for r in rows:
        off, on = r["grammar_steps_per_answer"], r["grammar_jump_steps_per_answer"]
        print(
            f"{r['image']:>8} | {r['recipe_grammar_ms']:7.1f} {r['recipe_grammar_jump_ms']:7.1f} | {off:12.1f} "
            f"{on:6.1f} {1 - on / off if off else 0.0:6.0%} | {str(r['same_grammar_answers']):>5}"
        )
    print(f"load average after: {os.getloadavg()}")
    print(f"JSON: {json_path}")
    same = all(r["same_tokens"] and r["same_recipe_tokens"] and r["same_grammar_answers"] for r in rows)
    return 0 if same else 1
