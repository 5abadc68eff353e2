"""Run a teacher (any HF Molmo2 checkpoint) over a folder of images with the station's prompts.

Writes records.jsonl in the training format: the teacher's answer is the target. Pointing answers
are kept only when they parse; yes/no answers are normalized to "Yes."/"No." from the teacher's
next-token logits. On a GPU server this is how a plant distills from Molmo2-4B/8B.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from tokenizers import Tokenizer

from edge_inspect.camera.images import images_in
from edge_inspect.vlm.points import parse_points
from tools.molmo2.checkpoint import (
    NO_WORDS,
    YES_WORDS,
    image_settings,
    load_checkpoint,
    prompt_settings,
    single_token_ids,
)
from tools.molmo2.predictor import TorchPredictor

from .tasks import TASKS


def label_folder(teacher: Path, images: Path, out: Path, tasks: list[str], max_new_tokens: int = 96) -> Path:
    from edge_inspect.vlm.prompt import PromptBuilder

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    model = load_checkpoint(teacher)
    tok = Tokenizer.from_file(str(teacher / "tokenizer.json"))
    settings = image_settings(teacher, model.config.vision_config.patch_size, model.config.vision_config.image_size[0])
    builder = PromptBuilder(tok, prompt_settings(teacher))
    predictor = TorchPredictor(model, tok, settings, builder, max_new_tokens=max_new_tokens)
    vocab = model.config.text_config.vocab_size
    predictor.yes = single_token_ids(tok, YES_WORDS, vocab)
    predictor.no = single_token_ids(tok, NO_WORDS, vocab)

    files = images_in(images)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "records.jsonl"
    kept = dropped = 0
    with open(jsonl, "w") as f, torch.no_grad():
        for path in files:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                dropped += 1
                continue
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            for task in tasks:
                prompt, kind = TASKS[task]
                if kind == "yes_no":
                    target = "Yes." if predictor.yes_no(rgb, prompt) else "No."
                else:
                    _, target = predictor.point(rgb, prompt)
                    if parse_points(target).malformed:
                        dropped += 1
                        continue
                rel = Path(path).resolve()
                f.write(
                    json.dumps(
                        {
                            "image": str(rel),
                            "prompt": prompt,
                            "target": target,
                            "task": task,
                            "kind": kind,
                            "teacher": teacher.name,
                        }
                    )
                    + "\n"
                )
                kept += 1
    (out / "label_summary.json").write_text(json.dumps({"images": len(files), "records": kept, "dropped": dropped}))
    return jsonl
