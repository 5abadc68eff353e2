"""The camera calibration file (calibration/camera.json by default): intrinsics, lens distortion and the
working plane's millimetres per pixel, as ``edge-inspect calibrate-camera`` writes it (camera/calibration.py)
and ``camera.calibration`` in station.yaml names it. Read here so the config check needs no camera code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError


class CalibrationError(UserError, ValueError):
    """Calibration cannot be done from these images; names the file or the reason."""


@dataclass
class CameraCalibration:
    image_size: tuple[int, int]  # width, height
    camera_matrix: list[list[float]]
    distortion: list[float]
    mm_per_px: float  # on the working plane, after undistortion
    rms_px: float  # reprojection error
    board: tuple[int, int]
    square_mm: float
    images: int
    plane_image: str

    @property
    def focal_px(self) -> tuple[float, float]:
        return self.camera_matrix[0][0], self.camera_matrix[1][1]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> CameraCalibration:
        try:
            data = json.loads(path.read_text())
            return cls(**{**data, "image_size": tuple(data["image_size"]), "board": tuple(data["board"])})
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise CalibrationError(f"{path}: not a camera calibration file ({err})") from None
