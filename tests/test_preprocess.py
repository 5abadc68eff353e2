"""Molmo2 preprocessing in numpy vs transformers' Molmo2ImageProcessor code.

The HF processor needs torchvision for its resize and normalize primitives; ``HFImageProcessor``
(tools/export/hf_reference.py) runs the HF code with those two primitives written in torch,
so the tiling, crops, patch order, pooling indices and grids compared here are HF's own.
"""

import numpy as np
import pytest

from edge_inspect.vlm.preprocess import ImageSettings, preprocess, to_rgb

pytest.importorskip("transformers", reason="the HF reference needs the 'export' extra")
from tools.export.hf_reference import HFImageProcessor  # noqa: E402

# (height, width, max_crops): squares, portrait, landscape, tiny, and images larger than
# max_crops tiles can cover at native resolution (downscaled onto the canvas).
SIZES = [
    (378, 378, 8),
    (200, 300, 8),
    (1000, 700, 8),
    (50, 80, 8),
    (480, 640, 12),
    (2000, 3000, 4),
    (720, 1280, 8),
    (1024, 200, 6),
]


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # A mix of smooth and sharp content, so interpolation is exercised on both.
    yy, xx = np.mgrid[0:h, 0:w]
    gradient = ((xx * 255 // max(w - 1, 1) + yy * 128 // max(h - 1, 1)) % 256).astype(np.uint8)
    checker = ((yy // 16 + xx // 16) % 2 == 0)[..., None]
    return np.where(checker, base, gradient[..., None]).astype(np.uint8)


@pytest.mark.parametrize("h,w,max_crops", SIZES)
def test_matches_hf_processor_defaults(h, w, max_crops):
    image = _image(h, w, seed=h * w)
    ref = HFImageProcessor(max_crops=max_crops).run(image)
    ours = preprocess(image, ImageSettings(max_crops=max_crops))
    assert ours.pixel_values.shape == ref["pixel_values"].shape
    assert np.array_equal(ours.pixel_values, ref["pixel_values"]), "pixel values differ"
    assert np.array_equal(ours.pooling, ref["image_token_pooling"])
    assert list(ours.grid) == ref["image_grids"][0].tolist()
    assert ours.pixel_values.shape[0] == ref["image_num_crops"][0]


def test_tilings_differ_across_sizes():
    tilings = {preprocess(_image(h, w, 0), ImageSettings(max_crops=m)).tiling for h, w, m in SIZES}
    assert len(tilings) >= 4


@pytest.mark.parametrize("h,w", [(90, 140), (300, 200), (64, 64), (900, 1600)])
def test_matches_hf_with_checkpoint_settings(h, w):
    """Non-default crop size, margins, max_crops, mean and std, as a checkpoint may set them."""
    settings = ImageSettings(crop_size=112, max_crops=4, overlap_margins=(2, 2), image_mean=(0.48, 0.45, 0.4),
                             image_std=(0.27, 0.26, 0.28))
    hf = HFImageProcessor(size={"height": 112, "width": 112}, max_crops=4, overlap_margins=[2, 2],
                          image_mean=[0.48, 0.45, 0.4], image_std=[0.27, 0.26, 0.28])
    image = _image(h, w, seed=7)
    ref = hf.run(image)
    ours = preprocess(image, settings)
    assert np.array_equal(ours.pixel_values, ref["pixel_values"])
    assert np.array_equal(ours.pooling, ref["image_token_pooling"])
    assert list(ours.grid) == ref["image_grids"][0].tolist()


def test_channel_orders_and_grey():
    rgb = _image(40, 60, 1)
    assert np.array_equal(to_rgb(rgb[:, :, ::-1], "bgr"), rgb)
    grey = rgb[:, :, 0]
    assert to_rgb(grey).shape == (40, 60, 3)
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="order"):
        to_rgb(rgb, "rgba")
