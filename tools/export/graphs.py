"""The three exportable graphs of a Molmo2 model, built from the HF modules themselves.

* vision: crops + pooling indices → image features. The adapter's boolean row filter and key
  padding become an additive mask, so the graph has no NonZero / If (TensorRT cannot take them);
  rows of only padding never occur with Molmo2's pooling, and the runtime refuses them.
* embed: token ids + per-token image features → inputs_embeds (features are *added* onto the
  ``<im_patch>`` embeddings, as in HF).
* decoder: inputs_embeds, additive mask, position ids, past K/V → last-token logits, present K/V.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import Molmo2ForConditionalGeneration


class VisionGraph(nn.Module):
    def __init__(self, model: Molmo2ForConditionalGeneration):
        super().__init__()
        inner = model.model
        self.tower = inner.vision_tower
        self.adapter = inner.multi_modal_projector
        self.feature_layers = list(inner.config.adapter_config.vision_feature_layer)
        n = len(self.tower.layers)
        # hidden_states[0] is the patch embedding, hidden_states[k + 1] the output of layer k.
        self.hidden_index = [layer + 1 if layer >= 0 else n + 1 + layer for layer in self.feature_layers]
        self.depth = max(self.hidden_index)

    def forward(self, pixel_values: torch.Tensor, pooling: torch.Tensor) -> torch.Tensor:
        x = self.tower.patch_embedding(pixel_values) + self.tower.positional_embedding[None]
        hidden = [x]
        for layer in self.tower.layers[: self.depth]:
            x = layer(x, None)
            hidden.append(x)
        features = torch.cat([hidden[i] for i in self.hidden_index], dim=-1)
        flat = features.reshape(-1, features.shape[-1])

        valid = pooling >= 0
        valid_f = valid.to(flat.dtype)
        gathered = flat[pooling.clamp(min=0)] * valid_f[..., None]
        count = valid_f.sum(-1).clamp(min=1.0)
        query = gathered.sum(-2, keepdim=True) / count[:, None, None]
        mask = ((1.0 - valid_f) * torch.finfo(flat.dtype).min)[:, None, None, :]
        pooled, _ = self.adapter.image_pooling_2d(query, gathered, attention_mask=mask)
        return self.adapter.image_projector(pooled.squeeze(1))


class EmbedGraph(nn.Module):
    def __init__(self, model: Molmo2ForConditionalGeneration):
        super().__init__()
        self.embed_tokens = model.model.language_model.embed_tokens

    def forward(self, input_ids: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids) + image_embeds


class _GraphCache:
    """The one method of HF's Cache that Molmo2 attention calls: append and return the full K/V."""

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]]):
        self.past = past
        self.present: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(past)  # type: ignore[list-item]

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        past_k, past_v = self.past[layer_idx]
        key = torch.cat([past_k, key], dim=2)
        value = torch.cat([past_v, value], dim=2)
        self.present[layer_idx] = (key, value)
        return key, value


class DecoderGraph(nn.Module):
    def __init__(self, model: Molmo2ForConditionalGeneration):
        super().__init__()
        self.lm = model.model.language_model
        self.lm_head = model.lm_head

    def forward(self, inputs_embeds, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(len(self.lm.layers))]
        cache = _GraphCache(past)
        rope = {
            "scaled": self.lm.rotary_emb(inputs_embeds, position_ids=position_ids),
            "unscaled": self.lm.rotary_emb_unscaled(inputs_embeds, position_ids=position_ids),
        }
        h = inputs_embeds
        for i, layer in enumerate(self.lm.layers):
            h = layer(
                h,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                position_embeddings=rope[self.lm.rope_types[i]],
            )
        h = self.lm.norm(h[:, -1:, :])
        logits = self.lm_head(h)[:, 0, :]
        presents = [t for pair in cache.present for t in pair]
        return (logits, *presents)
