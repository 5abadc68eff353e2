"""A network camera (an MJPEG server on loopback, every frame numbered) that freezes, dies and
comes back: no crash, `ready` low within 2 s, recovery without a restart, and every inspected
frame was sent after the trigger."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from edge_inspect.camera.live import LiveCamera
from edge_inspect.camera.sources import CameraError, OpenCVSource

from ..support.mjpeg_server import frame_number
from ..support.paths import REPO_ROOT
from ..support.stations import free_port, run_station, write_station


class MJPEGServer:
    def __init__(self, tmp: Path, fps: float = 25.0):
        self.port, self.log, self.fps = free_port(), tmp / "sent.log", fps
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.mjpeg_server", str(self.port), str(self.log), str(self.fps)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "serving"

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def sent_at_ns(self, seq: int) -> int:
        sent = dict(map(int, line.split()) for line in self.log.read_text().splitlines() if line.strip())
        return sent[seq]


@pytest.fixture
def server(tmp_path):
    s = MJPEGServer(tmp_path)
    s.start()
    yield s
    if s.proc.poll() is None:
        s.thaw()
        s.kill()


def _until(condition, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``condition()`` held, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(step)
    return None


def _assert_fresh(camera: LiveCamera, server: MJPEGServer) -> None:
    trigger_ns = time.time_ns()
    frame = camera.grab()
    seq = frame_number(frame)
    assert server.sent_at_ns(seq) > trigger_ns, f"frame {seq} was sent before the trigger"


def test_a_frozen_or_dead_stream_is_lost_fast_and_recovers_20_rounds(server):
    camera = LiveCamera(
        lambda: OpenCVSource(server.url, cv2.CAP_FFMPEG, timeout_ms=1000),
        stall_timeout_s=1.0,
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    try:
        camera.start()
        assert _until(lambda: camera.check() == "ok", 15) is not None, camera.detail
        _assert_fresh(camera, server)
        detected = []
        for round_ in range(20):
            server.freeze() if round_ % 2 == 0 else server.kill()
            took = _until(lambda: camera.check() == "lost", 5)  # the station's health loop calls check()
            assert took is not None and took <= 2.0, (round_, took)
            detected.append(took)
            with pytest.raises(CameraError):
                camera.grab()
            server.thaw() if round_ % 2 == 0 else server.start()
            assert _until(lambda: camera.check() == "ok", 20) is not None, (round_, camera.detail)
            _assert_fresh(camera, server)
        print(f"loss detected after {min(detected):.2f}–{max(detected):.2f} s; {camera.failures} failures")
    finally:
        camera.close()


def test_station_on_a_network_camera_drops_ready_and_inspects_only_new_frames(server, tmp_path, tiny_bundle):
    config = write_station(
        tmp_path,
        tiny_bundle,
        camera={
            "source": "url",
            "url": server.url,
            "stall_timeout_s": 1.0,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
    )

    async def scenario(station):
        async def until(condition, timeout: float) -> float | None:
            start = time.monotonic()
            while time.monotonic() - start < timeout:
                if condition():
                    return time.monotonic() - start
                await asyncio.sleep(0.05)
            return None

        def ready() -> bool:
            return bool(station.handshake.outputs["ready"])

        async def inspect_fresh() -> None:
            trigger_ns = time.time_ns()
            await station.inspect(1, part_id="cam")
            row = station.store.latest()
            frame = cv2.imread(str(station.store.folder / row["image_path"]))
            seq = frame_number(frame)
            assert server.sent_at_ns(seq) > trigger_ns, f"inspected frame {seq} was sent before the trigger"

        assert await until(ready, 20) is not None
        await inspect_fresh()
        for round_ in range(4):
            server.freeze() if round_ % 2 == 0 else server.kill()
            took = await until(lambda: not ready(), 5)
            assert took is not None and took <= 2.0, (round_, took)
            assert station.camera.status == "lost" and station.handshake.outputs["error_code"] == 2
            server.thaw() if round_ % 2 == 0 else server.start()
            assert await until(ready, 20) is not None, (round_, station.camera.detail)
            await inspect_fresh()

    asyncio.run(run_station(config, scenario))
