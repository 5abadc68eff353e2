"""Reference inputs built with transformers' own Molmo2 code, for parity tests.

transformers' ``Molmo2ImageProcessor`` needs torchvision for two primitives, which cannot be
installed beside the CPU torch build used here. ``HFImageProcessor`` runs the HF processor's
real code (tiling, crops, patches, pooling indices, grids) with exactly those two primitives
replaced by their torch definitions:

* ``resize``: torchvision's tensor resize with bilinear interpolation and ``antialias=False``
  is ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``;
* ``normalize``: torchvision's ``normalize`` is ``(x - mean[:, None, None]) / std[:, None, None]``.

The RGB conversion (grey → RGB, RGBA composited on white) is HF's own ``convert_to_rgb`` of the
torchvision backend, given torchvision's ``grayscale_to_rgb`` and ``to_dtype`` written in torch.

torch picks one of two resize kernels at run time (see edge_inspect/vlm/preprocess.py): the
reference runs with the torch thread count of the calling process; parity tests pin it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import transformers.image_processing_backends as _backends
from transformers.image_utils import SizeDict
from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor


class _TorchvisionFunctions:
    """torchvision.transforms.v2.functional's two helpers that ``convert_to_rgb`` calls, as torchvision
    defines them (``to_dtype_image``: int → float multiplies by 1/max; float → int multiplies by
    max + 1 - 1e-3 and truncates)."""

    @staticmethod
    def grayscale_to_rgb(image: torch.Tensor) -> torch.Tensor:
        return image if image.shape[-3] >= 3 else image.expand(*image.shape[:-3], 3, *image.shape[-2:])

    @staticmethod
    def to_dtype(image: torch.Tensor, dtype: torch.dtype, scale: bool = False) -> torch.Tensor:
        if image.dtype == dtype or not scale:
            return image.to(dtype)
        if dtype.is_floating_point:
            return image.to(dtype).mul_(1.0 / torch.iinfo(image.dtype).max)
        return image.mul(torch.iinfo(dtype).max + 1.0 - 1e-3).to(dtype)


if not hasattr(_backends, "tvF"):  # torchvision is not installed beside this torch build
    _backends.tvF = _TorchvisionFunctions


class HFImageProcessor(Molmo2ImageProcessor):
    def resize(self, image, size, resample=None, antialias=True, **kwargs):
        assert antialias is False, "Molmo2 resizes without antialias"
        return torch.nn.functional.interpolate(
            image, size=(size.height, size.width), mode="bilinear", align_corners=False
        )

    def normalize(self, image, mean, std, inplace=False, **kwargs):
        mean = torch.as_tensor(mean, dtype=image.dtype).reshape(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype).reshape(-1, 1, 1)
        return (image - mean) / std

    def to_rgb(self, image: np.ndarray) -> np.ndarray:
        """HWC uint8 RGB from a grey/RGB/RGBA HWC array, by the HF processor's own conversion."""
        return self.process_image(image, do_convert_rgb=True).permute(1, 2, 0).numpy()

    def resize_uint8(self, image_rgb: np.ndarray, height: int, width: int) -> np.ndarray:
        """HF's ``resize_and_normalize_image`` resize step alone: float resize, round, clamp, uint8."""
        tensor = torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1).contiguous()[None]
        resized = self.resize(tensor.float(), SizeDict(height=height, width=width), antialias=False)
        return resized.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()

    def run(self, image_rgb: np.ndarray) -> dict[str, np.ndarray]:
        tensor = torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1).contiguous()
        out = self._preprocess(
            [tensor],
            do_resize=True,
            size=SizeDict(height=self.size["height"], width=self.size["width"]),
            resample=self.resample,
            do_rescale=self.do_rescale,
            rescale_factor=self.rescale_factor,
            do_normalize=self.do_normalize,
            image_mean=self.image_mean,
            image_std=self.image_std,
            do_convert_rgb=False,
            max_crops=self.max_crops,
            overlap_margins=self.overlap_margins,
            patch_size=self.patch_size,
            pooling_size=self.pooling_size,
            disable_grouping=True,
            return_tensors=None,
        )
        return {k: v.numpy() for k, v in out.items()}

    @classmethod
    def from_checkpoint(cls, checkpoint: Path) -> HFImageProcessor:
        """The processor as the checkpoint's preprocessor_config.json sets it up."""
        config = json.loads((Path(checkpoint) / "preprocessor_config.json").read_text())
        keys = (
            "size",
            "max_crops",
            "overlap_margins",
            "patch_size",
            "pooling_size",
            "image_mean",
            "image_std",
            "do_rescale",
            "rescale_factor",
            "do_normalize",
        )
        return cls(**{k: config[k] for k in keys if k in config})


def hf_inputs(processor: HFImageProcessor, image_rgb: np.ndarray, engine, question: str) -> dict[str, torch.Tensor]:
    """Model inputs for transformers: pixels from the HF processor code, ids from our prompt builder
    (whose image-token layout tests check against ``Molmo2Processor.replace_image_token``)."""
    pixels = processor.run(image_rgb)
    grid = tuple(int(v) for v in pixels["image_grids"][0])
    prompt = engine.prompts.build(question, grid)
    return {
        "input_ids": torch.tensor(prompt.ids)[None],
        "pixel_values": torch.from_numpy(pixels["pixel_values"]),
        "image_token_pooling": torch.from_numpy(pixels["image_token_pooling"]),
        "image_grids": torch.from_numpy(pixels["image_grids"]),
        "image_num_crops": torch.from_numpy(pixels["image_num_crops"]),
        "mm_token_type_ids": torch.from_numpy(engine.prompts.image_mask(prompt.ids).astype(np.int64))[None],
    }
