"""A live camera (device, network stream, GStreamer) behind one grabber thread.

Only the grabber thread opens, reads and releases its capture: closing a capture while another
thread is inside ``read()`` crashed the process (SIGSEGV in FFmpeg). The grabber reads without
pause, so the stream's buffer never fills with old frames, and keeps only the newest frame with
its arrival time. When the stream stalls (the grabber is stuck inside ``read()``), the watchdog
marks the camera lost and *abandons* that grabber: a new one starts with a new capture after the
backoff, and the old one releases its own capture if its read ever returns.

``grab()`` returns a frame that arrived after the call — by default the second one, because the
first may have been on its way (sent before the trigger) when the call was made — or raises
CameraError. A frame older than ``max_frame_age_ms`` is never returned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class CameraError(Exception):
    """No frame could be had from the camera."""


class Source(Protocol):
    name: str

    def open(self) -> None: ...

    def read(self) -> np.ndarray: ...

    def close(self) -> None: ...


class LiveCamera:
    def __init__(
        self,
        make_source: Callable[[], Source],
        stall_timeout_s: float = 1.5,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 10.0,
        max_frame_age_ms: float = 500.0,
        frames_after_trigger: int = 2,
        on_status: Callable[[str, str], None] | None = None,
    ):
        self.make_source = make_source
        self.name = make_source().name
        self.stall_timeout_s = stall_timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.max_frame_age_s = max_frame_age_ms / 1000
        self.frames_after_trigger = max(1, frames_after_trigger)
        self.on_status = on_status
        self.status = "closed"  # closed | ok | lost
        self.detail = ""
        self.frames = 0  # frames received since start (the grabber's sequence number)
        self.failures = 0
        self.last_frame_at = time.monotonic()  # monotonic arrival time of the newest frame
        self._frame: np.ndarray | None = None
        self._cond = threading.Condition()
        self._generation = 0
        self._stopping = False
        self._started_at = time.monotonic()
        self._backoff = reconnect_min_s
        self._thread: threading.Thread | None = None

    # -- the grabber thread ------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopping:
                self._spawn()

    def _spawn(self) -> None:
        """Start a grabber of a new generation (call with the condition held)."""
        self._generation += 1
        self._started_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._grabber, args=(self._generation,), daemon=True, name=f"grabber-{self._generation}"
        )
        self._thread.start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stopping

    def _grabber(self, generation: int) -> None:
        while self._current(generation):
            source = self.make_source()
            try:
                source.open()
            except Exception as err:
                self._lost(generation, f"{self.name}: cannot open: {err}")
                self._wait_backoff(generation)
                continue
            detail = ""
            try:
                while self._current(generation):
                    try:
                        frame = source.read()
                    except Exception as err:  # any source failure is a camera failure
                        detail = f"{self.name}: {err}"
                        break
                    with self._cond:
                        if not self._current(generation):
                            break
                        self._frame = frame
                        self.frames += 1
                        self.last_frame_at = time.monotonic()
                        self._backoff = self.reconnect_min_s
                        self._cond.notify_all()
                    self._set(generation, "ok")
            finally:
                try:
                    source.close()  # this thread's own capture: nobody else touches it
                except Exception:
                    log.debug("closing %s failed", self.name, exc_info=True)
            if not self._current(generation):
                return  # abandoned or stopping
            self._lost(generation, detail or f"{self.name}: stream ended")
            self._wait_backoff(generation)

    def _wait_backoff(self, generation: int) -> None:
        with self._cond:
            delay = self._backoff
            self._backoff = min(self.reconnect_max_s, self._backoff * 2)
            deadline = time.monotonic() + delay
            while self._current(generation) and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())

    # -- status ------------------------------------------------------------------------------------
    def _set(self, generation: int, status: str, detail: str = "") -> None:
        with self._cond:
            if generation != self._generation or status == self.status and detail == self.detail:
                return
            changed = status != self.status
            self.status, self.detail = status, detail
        if changed:
            log.log(logging.WARNING if status == "lost" else logging.INFO, "camera %s %s", status, detail)
            if self.on_status:
                self.on_status(status, detail)

    def _lost(self, generation: int, detail: str) -> None:
        with self._cond:
            self.failures += 1
            self._frame = None
        self._set(generation, "lost", detail)

    def check(self) -> str:
        """The watchdog: a stream with no frame for ``stall_timeout_s`` is lost, and its grabber,
        stuck inside read(), is abandoned for a new one. Returns the status."""
        now = time.monotonic()
        with self._cond:
            if self._thread is None or self._stopping:
                return self.status
            since = max(self.last_frame_at, self._started_at)
            stalled = now - since > self.stall_timeout_s and self._thread.is_alive()
            generation = self._generation
        if stalled:
            self._lost(generation, f"{self.name}: no frame within {self.stall_timeout_s:.1f} s (stalled)")
            with self._cond:
                if generation == self._generation and not self._stopping:
                    log.info("camera %s: abandoning the stalled grabber %d", self.name, generation)
                    self._spawn()
        return self.status

    # -- the camera interface ----------------------------------------------------------------------
    @property
    def can_fail(self) -> bool:
        return True

    def probe(self) -> bool:
        """Idle check (cheap: no frame is consumed)."""
        self.start()
        return self.check() == "ok"

    def grab(self, trigger_at: float | None = None) -> np.ndarray:
        """A frame that arrived after this call (the ``frames_after_trigger``-th), or CameraError.
        ``trigger_at`` is for cameras triggered on a line (genicam.py); this one streams."""
        self.start()
        deadline = time.monotonic() + self.stall_timeout_s
        with self._cond:
            if self.status == "lost":
                raise CameraError(f"{self.name}: lost ({self.detail}); reconnecting")
            wanted = self.frames + self.frames_after_trigger
            while self.frames < wanted and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            frame, arrived = self._frame, self.last_frame_at
            fresh = self.frames >= wanted
        if not fresh or frame is None:
            self.check()
            raise CameraError(f"{self.name}: no new frame within {self.stall_timeout_s:.1f} s")
        if time.monotonic() - arrived > self.max_frame_age_s:
            raise CameraError(f"{self.name}: newest frame is {1000 * (time.monotonic() - arrived):.0f} ms old")
        return frame

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._generation += 1
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout=1.0)  # a grabber stuck in read() is a daemon thread; it closes its own capture
        self.status = "closed"
