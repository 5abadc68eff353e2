"""A frame's pooled image features: a small vector per view from the vision graph's output, computed
on the run every inspection makes anyway (the unfamiliar-frame guard compares it with a reference of
commissioning frames, docs/model-lifecycle.md).

The vector is the mean and the standard deviation, channel by channel, of the image tokens of the
global crop (the whole view resized to one crop: the first ``low_h × low_w`` tokens, whatever the
tiling does with the rest), so its length is ``2 × hidden`` and does not depend on the frame's size.
"""

from __future__ import annotations

import numpy as np


def pool_features(features: np.ndarray, grid: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """``features`` [n_tokens, hidden] from the vision graph, ``grid`` (low_h, low_w, high_h, high_w):
    float32 [2 × hidden]. Costs a few microseconds (two reductions over ~100 × hidden values)."""
    low = int(grid[0]) * int(grid[1])
    tokens = np.asarray(features[: low if 0 < low <= len(features) else len(features)], dtype=np.float32)
    return np.concatenate([tokens.mean(axis=0), tokens.std(axis=0)]).astype(np.float32)
