"""Molmo2 checkpoints, shared by tools/export and tools/distill (imports torch and transformers):
reading a HF checkpoint folder safely (settings, tokenizer, safetensors headers checked before any
weights are allocated), running it with the runtime's preprocessing, and small random models.

Layering: tools/molmo2 ← tools/export ← tools/distill. Nothing here imports export or distill.
"""
