"""Reference inputs built with transformers' own Molmo2 code, for parity tests.

transformers' ``Molmo2ImageProcessor`` needs torchvision for two primitives, which cannot be
installed beside the CPU torch build used here. ``HFImageProcessor`` runs the HF processor's
real code (tiling, crops, patches, pooling indices, grids) with exactly those two primitives
replaced by their torch definitions:

* ``resize``: torchvision's tensor resize with bilinear interpolation and ``antialias=False``
  is ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``;
* ``normalize``: torchvision's ``normalize`` is ``(x - mean[:, None, None]) / std[:, None, None]``.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.image_utils import SizeDict
from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor


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
