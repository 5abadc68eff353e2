"""The views of one part through the vision graph in one run (``encode_many``, benchmarks/views_batch.py)
give what one run per view gives: the same features, pooled features and image prefix, on frames of
different sizes; a part's checks judged with the inspector's ``batch_views`` on and off agree."""

import numpy as np
import pytest

from edge_inspect.config import Recipe
from edge_inspect.inspection.inspector import Inspector
from edge_inspect.sim import render_part
from edge_inspect.vlm import load_bundle

from ..support.paths import DEMO_STUDENT


@pytest.fixture(scope="module")
def student():
    return load_bundle(DEMO_STUDENT)


def test_encode_many_equals_one_encoding_per_view(tiny_bundle):
    model = load_bundle(tiny_bundle)  # random weights: any mix-up of the views' crops or pooling shows
    frames = [render_part(1, 320, 240).image, render_part(2, 200, 300).image, render_part(3, 640, 480).image]
    alone = [model.encode(f, order="bgr") for f in frames]
    together = model.encode_many(frames, order="bgr")
    assert len(together) == 3
    for a, b in zip(alone, together, strict=True):
        assert a.features.shape == b.features.shape
        assert np.allclose(a.features, b.features, atol=1e-5) and np.allclose(a.pooled, b.pooled, atol=1e-5)
        assert np.array_equal(a.prefix_ids, b.prefix_ids)
        assert all(np.allclose(x, y, atol=1e-4) for x, y in zip(a.prefix_kv.keys, b.prefix_kv.keys, strict=True))
    assert not np.allclose(together[0].features, together[2].features)  # the views are not one another


def test_a_part_judged_with_its_views_batched_or_not(student):
    recipe = Recipe.model_validate({"number": 1, "name": "views", "checks": [
        {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"},
        {"name": "screws-side", "kind": "count", "prompt": "Point to the screws.", "expected": 4, "view": "side"},
        {"name": "label-side", "kind": "qa", "question": "Is the label present?", "expect": "yes", "view": "side"},
    ]})  # fmt: skip
    frames = {"top": render_part(11).image, "side": render_part(12, 256, 192).image}
    one, batched = (Inspector(student, 48, batch_views=b).run_part(frames, recipe, "top") for b in (False, True))
    assert [(o.view, o.status, o.counted) for o in one.outcomes] == [
        (o.view, o.status, o.counted) for o in batched.outcomes
    ]
    assert [o.view for o in one.outcomes] == ["top", "side", "side"]
    assert [v.key for v in one.views] == ["frame", "side:frame"]  # the guard's keys: the first camera's unchanged
    for a, b in zip(one.outcomes, batched.outcomes, strict=True):
        assert a.p_yes is None or abs(a.p_yes - b.p_yes) < 1e-4
