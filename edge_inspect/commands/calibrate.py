"""``edge-inspect calibrate camera``: intrinsics, distortion and mm per pixel from chessboard images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def cmd_camera(args: argparse.Namespace) -> int:
    from ..camera.calibration import CalibrationError, calibrate

    try:
        columns, _, rows = args.board.lower().partition("x")
        board = (int(columns), int(rows))
    except ValueError:
        raise UserError(f"--board: {args.board!r} is not COLUMNSxROWS of inner corners, e.g. 9x6") from None
    try:
        result = calibrate(Path(args.images), board, args.square_mm, args.plane)
    except CalibrationError as err:
        raise UserError(str(err)) from None
    result.save(Path(args.out))
    fx, fy = result.focal_px
    print(
        f"{result.images} images, reprojection error {result.rms_px:.3f} px; focal {fx:.1f} / {fy:.1f} px; "
        f"working plane {result.mm_per_px:.4f} mm/px ({result.plane_image}); written to {args.out}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    calib = sub.add_parser("calibrate", help="calibrate the camera").add_subparsers(
        dest="calibrate_command", required=True
    )
    cam = calib.add_parser("camera", help="intrinsics, distortion and mm per pixel from chessboard images")
    cam.add_argument(
        "--images", required=True, help="folder of chessboard images (different angles, one flat on the working plane)"
    )
    cam.add_argument("--board", default="9x6", help="inner corners, columns x rows")
    cam.add_argument("--square-mm", type=float, required=True, help="side of one square in millimetres")
    cam.add_argument(
        "--plane",
        help="file name of the image with the board on the working plane (default: the "
        "last image, by name, in which the board was found)",
    )
    cam.add_argument("--out", default="calibration/camera.json", help="where the calibration is written")
    cam.set_defaults(func=cmd_camera)
