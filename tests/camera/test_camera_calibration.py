"""`edge-inspect calibrate camera` on chessboard images rendered with a known camera (focal 800 px,
principal point at the centre, board of 9×6 inner corners with 10 mm squares, 400 mm away): focal
length and the working plane's mm per pixel recovered within 1 %."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.camera.calibration import CameraCalibration, Undistorter

from ..support.paths import DEMO_STUDENT

SIZE = (640, 480)
K = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
SQUARE_MM, PX_PER_MM = 10.0, 10  # the texture: 10 px per mm


def _board_texture() -> np.ndarray:
    cols, rows = 10, 7  # squares (9×6 inner corners)
    margin = 10  # mm of white around the board
    w, h = (cols * SQUARE_MM + 2 * margin) * PX_PER_MM, (rows * SQUARE_MM + 2 * margin) * PX_PER_MM
    tex = np.full((int(h), int(w)), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                x0, y0 = int((margin + c * SQUARE_MM) * PX_PER_MM), int((margin + r * SQUARE_MM) * PX_PER_MM)
                tex[y0 : y0 + int(SQUARE_MM * PX_PER_MM), x0 : x0 + int(SQUARE_MM * PX_PER_MM)] = 0
    return tex


def _render(tex: np.ndarray, rx_deg: float, ry_deg: float, z_mm: float = 400.0) -> np.ndarray:
    """The board (centred on the optical axis) seen by camera K, rotated about x and y."""
    rot, _ = cv2.Rodrigues(np.radians([rx_deg, ry_deg, 0.0]))
    centre = np.array([tex.shape[1] / 2 / PX_PER_MM, tex.shape[0] / 2 / PX_PER_MM, 0.0])
    t = np.array([0.0, 0.0, z_mm]) - rot @ centre
    h = K @ np.column_stack([rot[:, 0], rot[:, 1], t]) @ np.diag([1 / PX_PER_MM, 1 / PX_PER_MM, 1.0])
    image = cv2.warpPerspective(tex, h, SIZE, flags=cv2.INTER_AREA, borderValue=255)
    return cv2.GaussianBlur(image, (3, 3), 0.6)


def test_focal_length_and_mm_per_pixel_within_1_percent(tmp_path):
    tex = _board_texture()
    folder = tmp_path / "board"
    folder.mkdir()
    poses = [(20, 0), (-20, 0), (0, 20), (0, -20), (15, 15), (-15, 15), (15, -15), (-15, -15), (25, 10)]
    for i, (rx, ry) in enumerate(poses):
        cv2.imwrite(str(folder / f"view{i:02d}.png"), _render(tex, rx, ry))
    cv2.imwrite(str(folder / "zz_plane.png"), _render(tex, 0, 0))  # flat on the working plane, 400 mm away
    out = tmp_path / "camera.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_inspect.cli",
            "calibrate",
            "camera",
            "--images",
            str(folder),
            "--board",
            "9x6",
            "--square-mm",
            "10",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calib = CameraCalibration.load(out)
    fx, fy = calib.focal_px
    assert abs(fx - 800) / 800 < 0.01 and abs(fy - 800) / 800 < 0.01, (fx, fy)
    assert abs(calib.mm_per_px - 0.5) / 0.5 < 0.01, calib.mm_per_px  # f / Z = 800 px / 400 mm
    assert calib.images == 10 and calib.plane_image == "zz_plane.png" and calib.rms_px < 0.5
    assert json.loads(out.read_text())["board"] == [9, 6]
    undistort = Undistorter(calib)
    assert undistort(cv2.imread(str(folder / "zz_plane.png"))).shape == (480, 640, 3)
    assert undistort.to_mm(0.5, 0.5) == (320 * calib.mm_per_px, 240 * calib.mm_per_px)
    print(f"focal {fx:.2f} / {fy:.2f} px (true 800), {calib.mm_per_px:.4f} mm/px (true 0.5), rms {calib.rms_px:.3f}")


def test_too_few_boards_is_one_line(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    cv2.imwrite(str(folder / "blank.png"), np.full((480, 640), 200, np.uint8))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_inspect.cli",
            "calibrate",
            "camera",
            "--images",
            str(folder),
            "--square-mm",
            "10",
            "--out",
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "found in 0 image(s)" in result.stderr


def _calibrated_station(tmp_path: Path, parts: int, **sections) -> Path:
    """A station.yaml replaying ``parts`` generated parts (320×240) through a camera calibrated at
    0.5 mm per pixel with no distortion, running the demo student."""
    from edge_inspect.sim import render_part

    from ..support.stations import write_station

    frames = tmp_path / "frames"
    frames.mkdir()
    for seed in range(parts):
        cv2.imwrite(str(frames / f"{seed}.png"), render_part(seed, 320, 240).image)
    calib = CameraCalibration(
        image_size=(320, 240),
        camera_matrix=[[400.0, 0, 160], [0, 400.0, 120], [0, 0, 1]],
        distortion=[0.0] * 5,
        mm_per_px=0.5,
        rms_px=0.1,
        board=(9, 6),
        square_mm=10.0,
        images=10,
        plane_image="plane.png",
    )
    calib.save(tmp_path / "camera.json")
    bundle = DEMO_STUDENT
    return write_station(
        tmp_path,
        bundle,
        model={"bundle": str(bundle), "max_new_tokens": 96},
        camera={"source": "folder", "path": str(frames), "calibration": "camera.json"},
        **sections,
    )


def test_a_calibrated_station_logs_points_in_millimetres(tmp_path):
    import asyncio
    import sqlite3

    from ..support.stations import run_station

    config = _calibrated_station(tmp_path, 3, plc={"enabled": False})

    async def scenario(station):
        for _ in range(3):
            await station.inspect(1)
        return station.store.path

    db_path = asyncio.run(run_station(config, scenario))
    with sqlite3.connect(db_path) as db:
        rows = db.execute("select x, y, x_mm, y_mm from points").fetchall()
    assert rows, "the student points at screws on these parts"
    for x, y, x_mm, y_mm in rows:
        assert abs(x_mm - x * 320 * 0.5) < 0.01 and abs(y_mm - y * 240 * 0.5) < 0.01


def test_plc_registers_carry_the_first_defect_positions_in_tenths_of_a_millimetre(tmp_path):
    """plc.options.defect_positions: 2 — a Modbus master reads the first two defect points of each
    result in 0.1 mm, the same points the log holds in mm."""
    import asyncio
    import sqlite3

    from ..support.stations import run_station_with_plc

    config = _calibrated_station(tmp_path, 8, plc={"options": {"defect_positions": 2}})

    async def scenario(station, plc):
        seen = []
        for i in range(8):
            await plc.cycle(10 + i, 1)
            valid = await plc.read("defect_positions_valid")
            xy = [(await plc.read(f"defect_{k}_x"), await plc.read(f"defect_{k}_y")) for k in (1, 2)]
            seen.append((10 + i, valid, xy))
        return seen, station.store.path

    seen, db_path = asyncio.run(run_station_with_plc(config, scenario))
    assert any(valid for _, valid, _ in seen), "some of these parts have defects the student points at"
    with sqlite3.connect(db_path) as db:
        for result_id, valid, xy in seen:
            (inspection_id,) = db.execute("select id from inspections where result_id = ?", [result_id]).fetchone()
            mm = db.execute(
                "select x_mm, y_mm from points where inspection_id = ? and check_idx = 0 order by rowid",
                [inspection_id],
            ).fetchall()
            assert valid == min(len(mm), 2)
            for k in range(2):
                expected = (round(mm[k][0] * 10), round(mm[k][1] * 10)) if k < valid else (0, 0)
                assert all(abs(a - b) <= 1 for a, b in zip(xy[k], expected, strict=True)), (result_id, xy, mm)


def test_defect_positions_need_a_calibrated_camera(tmp_path):
    from edge_inspect.config import ConfigError, load_config

    from ..support.stations import write_station

    bundle = DEMO_STUDENT
    config = write_station(tmp_path, bundle, plc={"options": {"defect_positions": 2}})
    try:
        load_config(config)
    except ConfigError as err:
        assert "plc.options.defect_positions: defect positions are in mm: they need camera.calibration" in str(err)
        assert str(config) + ":" in str(err)
    else:
        raise AssertionError("accepted defect positions without a calibration")


def test_a_missing_calibration_file_is_a_config_error(tmp_path):
    from edge_inspect.config import ConfigError, load_config

    from ..support.stations import write_station

    bundle = DEMO_STUDENT
    config = write_station(tmp_path, bundle, camera={"source": "synthetic", "calibration": "nowhere.json"})
    try:
        load_config(config)
    except ConfigError as err:
        assert f"{config}:" in str(err) and "camera.calibration: " in str(err) and "nowhere.json" in str(err)
    else:
        raise AssertionError("accepted a calibration file that does not exist")
