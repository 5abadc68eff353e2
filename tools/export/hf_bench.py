"""The transformers reference row of ``edge-inspect bench``: the same recipe on the same frames
with ``Molmo2ForConditionalGeneration`` in PyTorch (runs in its own process; needs the export extra)."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import numpy as np
import torch

from edge_inspect.bench import percentile
from edge_inspect.config import QACheck, Recipe
from edge_inspect.sim import render_part
from edge_inspect.vlm.preprocess import ImageSettings

from .checkpoint import image_settings, prompt_settings
from .onnx_bundle import load_checkpoint


def measure_hf(checkpoint: str, recipe: dict, frames: int, runs: int, warmup: int, max_new_tokens: int = 96) -> dict:
    from pathlib import Path

    from tokenizers import Tokenizer

    from edge_inspect.vlm.prompt import PromptBuilder
    from tools.distill.evaluate import TorchPredictor

    ckpt = Path(checkpoint)
    model = load_checkpoint(ckpt)
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    settings: ImageSettings = image_settings(ckpt, model.config.vision_config.patch_size,
                                             model.config.vision_config.image_size[0])
    predictor = TorchPredictor(model, tok, settings, PromptBuilder(tok, prompt_settings(ckpt)), max_new_tokens)
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
        "bundle": checkpoint, "backend": f"transformers-{__import__('transformers').__version__}",
        "precision": {"vision": "fp32", "decoder": "fp32"}, "stages_ms": None, "decode_tokens_per_s": None,
        "inspection_ms": {"p50": percentile(totals, 0.5), "p95": percentile(totals, 0.95),
                          "mean": statistics.fmean(totals)},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "runs": runs, "warmup": warmup,
        "note": "no image-prefix reuse; every check re-encodes the image (transformers generate)",
    }  # fmt: skip


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    print(json.dumps(measure_hf(a["checkpoint"], a["recipe"], a["frames"], a["runs"], a["warmup"])))
