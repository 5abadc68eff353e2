"""Molmo2 image preprocessing in numpy: tiling, overlapping crops, patches, pooling indices, grids.

This reproduces transformers' ``Molmo2ImageProcessor`` (5.23) without torch or torchvision.
The resize is torch's bilinear interpolation (``align_corners=False``, no antialias) computed in
float32 in the same order of operations as torch's CPU kernel, then rounded back to uint8 as the
HF processor does; transparent frames are composited on white as its torchvision backend does.
``tests/vlm/test_preprocess.py`` checks the output against the HF processor's own code, bit for bit.

torch has two CPU kernels for this resize and picks one at run time: the generic one, and a
channels-last one for small outputs (height + width <= 128) or when torch runs on one thread.
Both round differently in the last float bit, which decides pixels whose value lands on .5.
``resize_bilinear`` follows the choice of a multi-threaded torch (how the HF processor normally
runs); ``kernel="channels_last"`` reproduces a single-threaded one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

KERNELS = ("auto", "generic", "channels_last")
_CHANNELS_LAST_MAX_OUTPUT = 128  # torch uses its channels-last kernel when out_h + out_w <= this


class ImageError(UserError, ValueError):
    """A frame the model cannot take (empty, wrong dtype or channels); the message names its shape."""


@dataclass(frozen=True)
class ImageSettings:
    """The preprocessor settings that change pixels or the image-token layout."""

    crop_size: int = 378
    patch_size: int = 14
    max_crops: int = 8
    overlap_margins: tuple[int, int] = (4, 4)
    pooling_size: tuple[int, int] = (2, 2)
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    do_convert_rgb: bool = True

    @property
    def crop_patches(self) -> int:
        return self.crop_size // self.patch_size

    @property
    def patches_per_crop(self) -> int:
        return self.crop_patches**2


@dataclass(frozen=True)
class ImageInputs:
    """Vision-graph inputs for one image, in the HF processor's layout."""

    pixel_values: np.ndarray  # [total_crops, patches_per_crop, patch*patch*3] float32, global crop first
    pooling: np.ndarray  # [n_tokens, pool_h*pool_w] int64, flat patch indices, -1 = padding
    grid: tuple[int, int, int, int]  # low_h, low_w, high_h, high_w (pooled)
    tiling: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        low_h, low_w, high_h, high_w = self.grid
        return low_h * low_w + high_h * high_w


def select_tiling(height: int, width: int, window: int, max_crops: int) -> tuple[int, int]:
    """The (rows, cols) tiling whose canvas needs the least upscaling (HF ``select_tiling``)."""
    tilings = [(h, w) for h, w in itertools.product(range(1, max_crops + 1), repeat=2) if h * w <= max_crops]
    tilings.sort(key=lambda t: (t[0] * t[1], t[0]))
    candidates = np.array(tilings, dtype=np.int32) * window
    original = np.array([height, width], dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = (candidates.astype(np.float32) / original).min(axis=-1)
    if np.all(scales < 1):
        return tilings[int(np.argmax(scales))]
    scales = np.where(scales < 1.0, np.float32(10e9), scales)
    return tilings[int(np.argmin(scales))]


def crop_geometry(height: int, width: int, s: ImageSettings) -> tuple[int, int, int, int]:
    """Tiling (rows, cols) and canvas size (height, width) in pixels for an image."""
    left, right = s.overlap_margins
    window = (s.crop_patches - left - right) * s.patch_size
    if window <= 0:
        raise ValueError(f"overlap_margins {list(s.overlap_margins)} leave no window in a {s.crop_patches}-patch crop")
    margin = (left + right) * s.patch_size
    rows, cols = select_tiling(height - margin, width - margin, window, s.max_crops)
    return rows, cols, rows * window + margin, cols * window + margin


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear resize along one axis (float32 arithmetic)."""
    scale = np.float32(in_size) / np.float32(out_size)
    # torch evaluates scale * (i + 0.5) - 0.5 as one fused multiply-add: exact, then one rounding.
    real = (np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
    real = np.maximum(real, np.float32(0.0))
    i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    lam1 = np.clip(real - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    lam0 = (np.float32(1.0) - lam1).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, lam0, lam1


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c rounded once to float32, as the fused multiply-add in torch's CPU kernel."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


def _resize_generic(image: np.ndarray, h0, h1, wh0, wh1, w0, w1, ww0, ww1) -> np.ndarray:
    """torch's generic kernel: one axis after the other, each a product then a fused multiply-add.

    Same arithmetic as ``_fma`` (the first product exact in float64, the second rounded to float32,
    their sum rounded once to float32), laid out for speed: the horizontal pass runs once per used
    source row on rows flattened to W*C (``np.take`` on the last axis), in place where it can."""
    channels = image.shape[2]
    rows, inverse = np.unique(np.concatenate([h0, h1]), return_inverse=True)
    src = image[rows].reshape(len(rows), -1)
    lanes = np.arange(channels)
    cols0 = (w0[:, None] * channels + lanes).reshape(-1)
    cols1 = (w1[:, None] * channels + lanes).reshape(-1)
    weight0 = np.repeat(ww0.astype(np.float64), channels)
    weight1 = np.repeat(ww1, channels)
    horizontal = np.take(src, cols0, axis=1).astype(np.float64)
    horizontal *= weight0
    right = np.take(src, cols1, axis=1).astype(np.float32)
    right *= weight1
    horizontal += right
    horizontal = horizontal.astype(np.float32)
    top = np.take(horizontal, inverse[: len(h0)], axis=0).astype(np.float64)
    top *= wh0.astype(np.float64)[:, None]
    bottom = np.take(horizontal, inverse[len(h0) :], axis=0)
    bottom *= wh1[:, None]
    top += bottom
    return top.astype(np.float32).reshape(len(h0), len(w0), channels)


def _resize_channels_last(image: np.ndarray, h0, h1, wh0, wh1, w0, w1, ww0, ww1) -> np.ndarray:
    """torch's channels-last kernel: four corner weights (float32 products), summed as
    fma(i11, w11, fma(i10, w10, fma(i00, w00, i01 * w01))) — the order its compiled code uses."""
    src = image.astype(np.float32)
    top, bottom = src[h0], src[h1]
    w00 = (wh0[:, None] * ww0[None, :])[..., None]
    w01 = (wh0[:, None] * ww1[None, :])[..., None]
    w10 = (wh1[:, None] * ww0[None, :])[..., None]
    w11 = (wh1[:, None] * ww1[None, :])[..., None]
    acc = top[:, w1] * w01
    acc = _fma(top[:, w0], w00, acc)
    acc = _fma(bottom[:, w0], w10, acc)
    return _fma(bottom[:, w1], w11, acc)


def resize_bilinear(image: np.ndarray, height: int, width: int, kernel: str = "auto") -> np.ndarray:
    """Resize an HxWxC uint8 image like HF's Molmo2 processor (float bilinear, round, clamp).

    The arithmetic follows torch's ``upsample_bilinear2d`` CPU kernels operation by operation,
    fused multiply-adds included, so the result is bit-identical to the HF processor's.
    ``kernel``: "auto" picks the kernel a multi-threaded torch picks for this output size;
    "generic" or "channels_last" force one (a single-threaded torch always uses channels-last)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "auto":
        kernel = "channels_last" if height + width <= _CHANNELS_LAST_MAX_OUTPUT else "generic"
    taps = (*_linear_taps(image.shape[0], height), *_linear_taps(image.shape[1], width))
    out = (_resize_channels_last if kernel == "channels_last" else _resize_generic)(image, *taps)
    # np.round rounds half to even, as torch.round does.
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _normalize(image: np.ndarray, s: ImageSettings) -> np.ndarray:
    x = image.astype(np.float32)
    if s.do_rescale and s.do_normalize:
        # HF fuses rescale into mean/std: (x - mean/f) / (std/f), all in float32.
        mean = np.asarray(s.image_mean, np.float32) * np.float32(1.0 / s.rescale_factor)
        std = np.asarray(s.image_std, np.float32) * np.float32(1.0 / s.rescale_factor)
        return (x - mean) / std
    if s.do_normalize:
        return (x - np.asarray(s.image_mean, np.float32)) / np.asarray(s.image_std, np.float32)
    if s.do_rescale:
        return x * np.float32(s.rescale_factor)
    return x


def _normalize_uint8(values: np.ndarray, s: ImageSettings) -> np.ndarray:
    """``_normalize`` of a uint8 array whose last axis cycles through the 3 channels, by table:
    the same float32 arithmetic per value, done 256 times per channel instead of once per pixel."""
    table = _normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1), s)
    if np.all(table == table[:, :1]):
        return np.take(table[:, 0], values)
    out = np.empty(values.shape, dtype=np.float32)
    for channel in range(3):
        out[..., channel::3] = np.take(table[:, channel], values[..., channel::3])
    return out


def _patchify(crops: np.ndarray, patch: int) -> np.ndarray:
    """[n, H, W, C] → [n, (H/p)*(W/p), p*p*C], each patch flattened in (y, x, c) order."""
    n, h, w, c = crops.shape
    x = crops.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // patch) * (w // patch), patch * patch * c)


def _pool_windows(grid: np.ndarray, pool_h: int, pool_w: int) -> tuple[np.ndarray, int, int]:
    """Group a patch-index grid into pooling windows, padded with -1 (HF ``arange_for_pooling``)."""
    pad_h = pool_h * ((grid.shape[0] + pool_h - 1) // pool_h) - grid.shape[0]
    pad_w = pool_w * ((grid.shape[1] + pool_w - 1) // pool_w) - grid.shape[1]
    grid = np.pad(grid, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2)), constant_values=-1)
    rows, cols = grid.shape[0] // pool_h, grid.shape[1] // pool_w
    windows = grid.reshape(rows, pool_h, cols, pool_w).transpose(0, 2, 1, 3).reshape(rows * cols, pool_h * pool_w)
    return windows, rows, cols


def _shape(image: object) -> str:
    shape = getattr(image, "shape", None)
    return "x".join(str(n) for n in shape) if shape is not None else type(image).__name__


def check_frame(image: object) -> np.ndarray:
    """The frame itself if it is a non-empty HxW, HxWx1, HxWx3 or HxWx4 uint8 array; else ImageError."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"frame must be a numpy uint8 array, got {_shape(image)}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ImageError(f"frame shape {_shape(image)}: expected HxW, HxWx1, HxWx3 or HxWx4")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"frame shape {_shape(image)}: empty (no pixels)")
    if image.dtype != np.uint8:
        raise ImageError(f"frame shape {_shape(image)}: image must be uint8, got {image.dtype}")
    return image


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an HxWx4 uint8 image onto white, with the arithmetic of the HF processor's torchvision
    backend: scale to [0, 1] in float32, ``rgb * a + (1 - a)``, back to uint8 by ``x * 255.999``
    truncated (torchvision's ``to_dtype(..., scale=True)``)."""
    x = rgba.astype(np.float32) * np.float32(1.0 / 255)
    alpha = x[:, :, 3:4]
    blended = (x[:, :, :3] * alpha).astype(np.float32) + (np.float32(1.0) - alpha)
    return (blended * np.float32(255 + 1.0 - 1e-3)).astype(np.uint8)


def to_rgb(image: np.ndarray, order: str = "rgb") -> np.ndarray:
    """An HxWx3 uint8 RGB copy or view of a grey, RGB, BGR, RGBA or BGRA frame.

    Transparent frames are composited on white, as the HF Molmo2 processor does."""
    if order not in ("rgb", "bgr"):
        raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")
    image = check_frame(image)
    if image.ndim == 2 or image.shape[2] == 1:
        grey = image.reshape(image.shape[0], image.shape[1])
        return np.repeat(grey[:, :, None], 3, axis=2)
    rgb = composite_on_white(image) if image.shape[2] == 4 else image
    if order == "bgr":
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(rgb)


def preprocess(image_rgb: np.ndarray, s: ImageSettings) -> ImageInputs:
    """Crops, patches and pooling indices for one RGB uint8 image (HxWx3)."""
    check_frame(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ImageError(f"frame shape {_shape(image_rgb)}: expected an HxWx3 RGB image (use to_rgb first)")
    height, width = image_rgb.shape[:2]
    crop, patch, cp = s.crop_size, s.patch_size, s.crop_patches
    left, right = s.overlap_margins
    window = (cp - left - right) * patch
    rows, cols, canvas_h, canvas_w = crop_geometry(height, width, s)

    # Crops are cut and patched as uint8 and normalized once at the end (by table, bit-identical).
    crops = np.empty((1 + rows * cols, crop, crop, 3), dtype=np.uint8)
    crops[0] = resize_bilinear(image_rgb, crop, crop)
    # One tile (max_crops 1, or a small frame): the canvas is the crop size, the same resize again.
    same = (canvas_h, canvas_w) == (crop, crop)
    canvas = crops[0] if same else resize_bilinear(image_rgb, canvas_h, canvas_w)
    for i, (r, c) in enumerate(itertools.product(range(rows), range(cols))):
        crops[1 + i] = canvas[r * window : r * window + crop, c * window : c * window + crop]
    index = np.arange(rows * cols * cp * cp, dtype=np.int64).reshape(rows, cols, cp, cp)
    if left:
        index[1:, :, :left, :] = -1
        index[:, 1:, :, :left] = -1
    if right:
        index[:-1, :, -right:, :] = -1
        index[:, :-1, :, -right:] = -1
    index = index.transpose(0, 2, 1, 3).reshape(-1)
    index = index[index >= 0].reshape(canvas_h // patch, canvas_w // patch)
    pool_h, pool_w = s.pooling_size
    high, high_rows, high_cols = _pool_windows(index, pool_h, pool_w)
    high = np.where(high >= 0, high + s.patches_per_crop, -1)

    low, low_rows, low_cols = _pool_windows(np.arange(cp * cp, dtype=np.int64).reshape(cp, cp), pool_h, pool_w)

    return ImageInputs(
        pixel_values=_normalize_uint8(_patchify(crops, patch), s),
        pooling=np.concatenate([low, high]).astype(np.int64),
        grid=(low_rows, low_cols, high_rows, high_cols),
        tiling=(rows, cols),
    )
