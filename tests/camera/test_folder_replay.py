"""The folder camera replays its images in name order, one per trigger, wrapping around, the same
sequence on every run, however far apart the triggers are: the station's idle checks between
triggers (every second) take no image. Triggers are spaced by those checks themselves (waited for
by count), never by sleeping."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np

from edge_inspect.camera.sources import Camera, FolderSource

from ..support.stations import run_station, write_station
from ..support.wait import async_wait_until


def folder_of_six(tmp_path):
    """Six images whose pixel value is their place in name order (out of order on disk)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (4, 1, 6, 2, 5, 3):
        cv2.imwrite(str(folder / f"img_{n:02d}.png"), np.full((64, 64, 3), n, np.uint8))
    return folder


def number(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0])


def test_one_image_per_trigger_however_many_idle_checks_come_between(tmp_path):
    folder = folder_of_six(tmp_path)
    runs = []
    for _ in range(2):  # the same sequence on every run
        camera = Camera(FolderSource(folder))
        seen = []
        for trigger in range(9):
            for _ in range(trigger % 4):  # 0–3 idle checks between triggers (as 0–3 s apart)
                assert camera.probe()
            seen.append(number(camera.grab()))
        camera.close()
        runs.append(seen)
    assert runs[0] == [1, 2, 3, 4, 5, 6, 1, 2, 3]
    assert runs[1] == runs[0]


def test_an_idle_check_notices_a_folder_gone(tmp_path):
    folder = folder_of_six(tmp_path)
    camera = Camera(FolderSource(folder), reconnect_min_s=0.01)
    assert number(camera.grab()) == 1
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    assert not camera.probe()
    assert camera.status == "lost"


def test_the_station_inspects_the_images_in_order_with_its_health_checks_between(tmp_path, tiny_bundle):
    folder = folder_of_six(tmp_path)
    config = write_station(
        tmp_path, tiny_bundle, plc={"enabled": False}, camera={"source": "folder", "path": str(folder)}
    )

    async def scenario(station):
        camera = station.camera
        source = camera.source  # the folder camera: its images in name order, and how many it has read
        grabbed: list[int] = []

        async def inspect() -> None:
            await station.inspect(1, trigger="software")
            grabbed.append(number(cv2.imread(str(source.files[source.index - 1]))))  # the image it read last

        for _ in range(3):
            await inspect()
            for _ in range(3):  # the health loop checks the idle camera three times (~1 s apart)
                # a check that finds the camera delivering moves its last frame time on
                moved = lambda since=camera.last_frame_at: camera.last_frame_at > since  # noqa: E731
                await async_wait_until(moved, 30, "an idle check")
        await inspect()
        return grabbed

    grabbed = asyncio.run(run_station(config, scenario))
    assert grabbed == [1, 2, 3, 4]
