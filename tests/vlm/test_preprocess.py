"""Molmo2 preprocessing in numpy vs transformers' Molmo2ImageProcessor code.

The HF processor needs torchvision for its resize and normalize primitives; ``HFImageProcessor``
(tools/export/hf_reference.py) runs the HF code with those two primitives written in torch,
so the tiling, crops, patch order, pooling indices and grids compared here are HF's own.
"""

import numpy as np
import pytest

from edge_inspect.vlm.preprocess import ImageSettings, preprocess, resize_bilinear, to_rgb

torch = pytest.importorskip("torch", reason="the HF reference needs the 'export' extra")
pytest.importorskip("transformers", reason="the HF reference needs the 'export' extra")
from tools.export.hf_reference import HFImageProcessor  # noqa: E402


@pytest.fixture(autouse=True)
def multithreaded_torch():
    """The HF processor as it normally runs: torch on several threads (one thread switches torch to
    its channels-last resize kernel everywhere; test_single_threaded_torch covers that case)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)


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
    (240, 320, 1),  # one tile: the canvas is the crop size (the demo camera's geometry)
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
    settings = ImageSettings(
        crop_size=112, max_crops=4, overlap_margins=(2, 2), image_mean=(0.48, 0.45, 0.4), image_std=(0.27, 0.26, 0.28)
    )
    hf = HFImageProcessor(
        size={"height": 112, "width": 112},
        max_crops=4,
        overlap_margins=[2, 2],
        image_mean=[0.48, 0.45, 0.4],
        image_std=[0.27, 0.26, 0.28],
    )
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


def _half_image(h, w, seed):
    """Content whose bilinear values often land on .5: neighbouring pixels differ by odd amounts."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 128, (h, w, 3), dtype=np.uint8) * 2
    return (base + (np.indices((h, w)).sum(0) % 2)[..., None]).astype(np.uint8)


def _half_cases(image, height, width):
    """How many output values of the exact float resize sit within 1e-4 of a .5 boundary."""
    t = torch.from_numpy(image).permute(2, 0, 1).contiguous()[None].float()
    out = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return int((torch.abs(out - out.floor() - 0.5) < 1e-4).sum())


# (source h, w, output h, w): upscales whose weights are near 1/2, exact 2x down, small outputs
# (height + width <= 128: torch's channels-last kernel) and large ones (its generic kernel).
RESIZES = [
    (64, 64, 112, 112),
    (64, 64, 56, 56),
    (33, 50, 112, 112),
    (60, 90, 30, 45),
    (240, 320, 112, 112),
    (100, 37, 60, 68),
    (224, 224, 112, 112),
    (50, 50, 378, 378),
]


@pytest.mark.parametrize("h,w,out_h,out_w", RESIZES)
def test_resize_is_bit_exact_on_half_cases(h, w, out_h, out_w):
    image = _half_image(h, w, seed=h + w)
    ref = HFImageProcessor().resize_uint8(image, out_h, out_w)
    assert np.array_equal(resize_bilinear(image, out_h, out_w), ref)


def test_half_cases_are_exercised():
    assert sum(_half_cases(_half_image(h, w, h + w), oh, ow) for h, w, oh, ow in RESIZES) > 1000


def test_single_threaded_torch():
    """On one thread torch always takes the channels-last kernel; kernel="channels_last" matches it."""
    torch.set_num_threads(1)
    for h, w, out_h, out_w in RESIZES:
        image = _half_image(h, w, seed=h * w)
        ref = HFImageProcessor().resize_uint8(image, out_h, out_w)
        assert np.array_equal(resize_bilinear(image, out_h, out_w, kernel="channels_last"), ref)


@pytest.mark.parametrize("h,w", [(40, 60), (150, 90), (56, 56)])
def test_small_crops_match_hf(h, w):
    """A 56 px crop: the global crop's resize (56 + 56 <= 128) takes torch's channels-last kernel."""
    settings = ImageSettings(crop_size=56, max_crops=4, overlap_margins=(1, 1))
    hf = HFImageProcessor(size={"height": 56, "width": 56}, max_crops=4, overlap_margins=[1, 1])
    image = _half_image(h, w, seed=11)
    ref = hf.run(image)
    ours = preprocess(image, settings)
    assert np.array_equal(ours.pixel_values, ref["pixel_values"])
    assert np.array_equal(ours.pooling, ref["image_token_pooling"])


def test_rgba_is_composited_on_white_as_hf_does():
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # transparent
    rgba[10:20, :, 3] = 255  # opaque
    hf = HFImageProcessor()
    ours = to_rgb(rgba)
    assert np.array_equal(ours, hf.to_rgb(rgba))
    assert (ours[:10] == 255).all() and np.array_equal(ours[10:20], rgba[10:20, :, :3])
    # BGRA from OpenCV: the same blend, channels swapped
    assert np.array_equal(to_rgb(rgba[:, :, [2, 1, 0, 3]], "bgr"), ours)
    # and through the whole preprocessing
    assert np.array_equal(preprocess(ours, ImageSettings()).pixel_values, hf.run(hf.to_rgb(rgba))["pixel_values"])
