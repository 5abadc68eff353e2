"""A transformers Molmo2 run with the appliance runtime's preprocessing and prompt layout: the
reference for benchmarks, teacher labelling and evaluation during training."""

from __future__ import annotations

import numpy as np
import torch

from edge_inspect.vlm.points import parse_points
from edge_inspect.vlm.preprocess import ImageSettings, preprocess


class TorchPredictor:
    """A transformers Molmo2 in memory (during training) with the runtime's preprocessing and prompts."""

    def __init__(self, model, tok, settings: ImageSettings, builder, max_new_tokens: int = 96):
        self.model, self.tok, self.settings, self.builder = model, tok, settings, builder
        self.max_new_tokens = max_new_tokens
        self.eos = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
        self.yes = [tok.token_to_id(t) for t in ("Yes",) if tok.token_to_id(t) is not None]
        self.no = [tok.token_to_id(t) for t in ("No",) if tok.token_to_id(t) is not None]

    def _inputs(self, rgb, prompt):
        inputs = preprocess(rgb, self.settings)
        ids = self.builder.build(prompt, inputs.grid).ids
        return {
            "input_ids": torch.from_numpy(ids)[None],
            "pixel_values": torch.from_numpy(inputs.pixel_values),
            "image_token_pooling": torch.from_numpy(inputs.pooling),
            "image_grids": torch.tensor([inputs.grid]),
            "image_num_crops": torch.tensor([inputs.pixel_values.shape[0]]),
            "mm_token_type_ids": torch.from_numpy(self.builder.image_mask(ids).astype(np.int64))[None],
        }

    @torch.no_grad()
    def point(self, rgb, prompt):
        inputs = self._inputs(rgb, prompt)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=self.eos)
        text = self.tok.decode(out[0, inputs["input_ids"].shape[1] :].tolist(), skip_special_tokens=True)
        return [(q.x, q.y) for q in parse_points(text).points], text

    @torch.no_grad()
    def yes_no(self, rgb, prompt):
        logits = self.model(**self._inputs(rgb, prompt)).logits[0, -1].float()
        return bool(logits[self.yes].max() >= logits[self.no].max())
