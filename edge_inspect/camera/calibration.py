"""Camera calibration from chessboard images (OpenCV): intrinsics, lens distortion, and the working
plane's millimetres per pixel, written as JSON (calibration/camera.json by default).

The plane image is the board lying on the working plane where the parts are; millimetres per pixel
come from its corner spacing after undistortion. A station with ``camera.calibration`` set
undistorts frames with these figures and reports defect points in millimetres too.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..config.calibration_file import CalibrationError, CameraCalibration
from .images import images_in

__all__ = ["CalibrationError", "CameraCalibration", "Undistorter", "calibrate"]


def _corners(gray: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, board, None, flags=flags)
    if not found:
        return None
    return cv2.cornerSubPix(
        gray, corners, (5, 5), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    )


def calibrate(folder: Path, board: tuple[int, int], square_mm: float, plane: str | None = None) -> CameraCalibration:
    files = images_in(folder)
    if not files:
        raise CalibrationError(f"{folder}: no images")
    grid = np.zeros((board[0] * board[1], 3), np.float32)
    grid[:, :2] = np.mgrid[0 : board[0], 0 : board[1]].T.reshape(-1, 2) * square_mm
    object_points, image_points, used, size = [], [], [], None
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CalibrationError(f"{path}: not an image OpenCV can read")
        if size is None:
            size = (image.shape[1], image.shape[0])
        elif size != (image.shape[1], image.shape[0]):
            raise CalibrationError(f"{path}: {image.shape[1]}×{image.shape[0]}, the others are {size[0]}×{size[1]}")
        corners = _corners(image, board)
        if corners is not None:
            object_points.append(grid)
            image_points.append(corners)
            used.append(path)
    if len(used) < 3:
        raise CalibrationError(
            f"{folder}: the {board[0]}×{board[1]} board was found in {len(used)} image(s); "
            "need at least 3 (different angles)"
        )
    assert size is not None  # set by the first image read, and 3 were used
    rms, matrix, dist, _, _ = cv2.calibrateCamera(object_points, image_points, size, None, None)
    plane_path = next((p for p in used if p.name == plane), None) if plane else used[-1]
    if plane_path is None:
        raise CalibrationError(f"{folder}: the plane image {plane} is missing or the board was not found in it")
    corners = image_points[used.index(plane_path)]
    flat = cv2.undistortPoints(corners, matrix, dist, P=matrix).reshape(board[1], board[0], 2)
    spacing = np.concatenate(
        [np.linalg.norm(np.diff(flat, axis=1), axis=2).ravel(), np.linalg.norm(np.diff(flat, axis=0), axis=2).ravel()]
    )
    return CameraCalibration(
        image_size=size,
        camera_matrix=matrix.tolist(),
        distortion=dist.ravel().tolist(),
        mm_per_px=float(square_mm / np.median(spacing)),
        rms_px=float(rms),
        board=board,
        square_mm=square_mm,
        images=len(used),
        plane_image=plane_path.name,
    )


class Undistorter:
    """Undistorts frames of the calibrated size (maps computed once)."""

    def __init__(self, calibration: CameraCalibration):
        self.calibration = calibration
        k = np.array(calibration.camera_matrix)
        d = np.array(calibration.distortion)
        self.size = tuple(calibration.image_size)
        self.maps = cv2.initUndistortRectifyMap(k, d, None, k, self.size, cv2.CV_16SC2)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise CalibrationError(
                f"frame is {frame.shape[1]}×{frame.shape[0]}, the calibration is for {self.size[0]}×{self.size[1]}"
            )
        return cv2.remap(frame, *self.maps, cv2.INTER_LINEAR)

    def to_mm(self, x: float, y: float) -> tuple[float, float]:
        """A point (fractions of the undistorted frame) in millimetres on the working plane, from the top left."""
        return (x * self.size[0] * self.calibration.mm_per_px, y * self.size[1] * self.calibration.mm_per_px)
