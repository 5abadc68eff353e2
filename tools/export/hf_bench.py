"""``python -m tools.export hf-bench``: the transformers reference row beside ``edge-inspect bench``.

The same recipe on the same generated frames as ``edge-inspect bench``, run by
``Molmo2ForConditionalGeneration`` in PyTorch (no image-prefix reuse: every check re-encodes the
image). The row has the JSON layout of ``edge-inspect bench``'s rows, so the two files can be
read side by side.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from edge_inspect.commands.bench import DEMO_RECIPE, percentile, print_table
from edge_inspect.config import QACheck, Recipe
from edge_inspect.sim import render_part
from edge_inspect.vlm.prompt import PromptBuilder
from tools.molmo2.checkpoint import inspect_checkpoint, load_checkpoint
from tools.molmo2.errors import CheckpointError
from tools.molmo2.predictor import TorchPredictor

log = logging.getLogger(__name__)


def measure_hf(checkpoint: Path, recipe: dict, frames: int, runs: int, warmup: int, max_new_tokens: int = 96) -> dict:
    info = inspect_checkpoint(checkpoint)
    model = load_checkpoint(checkpoint, checked=True)
    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    predictor = TorchPredictor(model, tok, info.image, PromptBuilder(tok, info.prompt), max_new_tokens)
    predictor.yes, predictor.no = list(info.tokens["yes"]), list(info.tokens["no"])
    r = Recipe.model_validate(recipe)
    images = [np.ascontiguousarray(render_part(700_000 + i).image[:, :, ::-1]) for i in range(frames)]

    def inspect(rgb: np.ndarray) -> None:
        for check in r.checks:
            if isinstance(check, QACheck):
                predictor.yes_no(rgb, check.question)
            else:
                predictor.point(rgb, check.prompt)

    with torch.no_grad():
        for i in range(warmup):
            inspect(images[i % frames])
        totals = []
        for i in range(runs):
            start = time.perf_counter()
            inspect(images[i % frames])
            totals.append((time.perf_counter() - start) * 1000)
    return {
        "bundle": str(checkpoint), "backend": f"transformers-{__import__('transformers').__version__}",
        "precision": {"vision": "fp32", "decoder": "fp32"}, "stages_ms": None, "decode_tokens_per_s": None,
        "inspection_ms": {"p50": percentile(totals, 0.5), "p95": percentile(totals, 0.95),
                          "mean": statistics.fmean(totals)},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "runs": runs, "warmup": warmup,
        "note": "no image-prefix reuse; every check re-encodes the image (transformers generate)",
    }  # fmt: skip


def _recipe(config: str | None, number: int) -> dict:
    if not config:
        return DEMO_RECIPE
    from edge_inspect.config import ConfigError, load_config

    try:
        station, _ = load_config(config)
    except ConfigError as err:
        raise CheckpointError(err.problems[0] if err.problems else f"{config}: invalid station config") from None
    chosen = station.recipe(number)
    if chosen is None:
        raise CheckpointError(f"{config}: recipe {number} is not in this station config")
    return chosen.model_dump()


def run_hf_bench(
    checkpoint: Path,
    config: str | None,
    recipe: int,
    frames: int,
    runs: int,
    warmup: int,
    json_path: str | None,
    max_new_tokens: int = 96,
) -> int:
    if frames < 1 or runs < 1 or warmup < 0:
        raise CheckpointError("--frames and --runs must be at least 1, --warmup at least 0")
    row = measure_hf(checkpoint, _recipe(config, recipe), frames, runs, warmup, max_new_tokens)
    print_table([row])
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(
            json.dumps(
                {
                    "rows": [row],
                    "frames": frames,
                    "runs": runs,
                    "warmup": warmup,
                    "statistic": "p50/p95 per inspection",
                },
                indent=2,
            )
            + "\n"
        )
        print(f"JSON: {json_path}")
    return 0
