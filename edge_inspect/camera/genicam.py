"""A GigE Vision / USB3 Vision camera through Aravis (``camera.source: genicam``, docs/cameras.md).

One thread of the camera's own makes every Aravis call for it: it finds and opens the camera,
sets its features (genicam_features.py), streams, executes TriggerSoftware when asked, and stops
and drops the stream and the camera before it ends. GLib objects used from two threads, or freed
while another thread was inside them, abort the process; so other threads only hand it requests
(a queue) and read the frames it has received (under a condition).

Trigger modes: ``free_run`` returns a frame that arrived after the grab (as the other live
cameras); ``software`` executes TriggerSoftware and returns the frame that command produced (by
frame id, never an older buffered one); ``hardware`` returns the frame the camera took on its line
within ``max_frame_age_ms`` of the PLC's trigger (matching.py), else none: ERROR with code 2.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..config import GenICamSettings
from ..errors import UserError
from .genicam_features import check_settings, configure, describe, find_device
from .live import CameraError
from .matching import Frame, for_hardware_trigger, for_software_trigger, is_after
from .pixels import PixelFormatError, format_name, to_bgr

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "camera.source genicam needs Aravis 0.8 and PyGObject: install the Debian package gir1.2-aravis-0.8 "
    "and PyGObject (pip install PyGObject==3.50.2 in the venv, or python3-gi for the system Python); docs/cameras.md"
)
_POP_US = 20_000  # the thread's longest wait for a buffer: how soon it answers a request
_HEALTH_S = 0.5  # how often a triggered camera (no frames between triggers) is asked whether it is there
# A register read on a camera that is there takes about a millisecond; Aravis itself gives up on an
# unanswered one only after 5 tries of 500 ms. The watch thread calls the camera lost when a call of
# the camera's thread has waited this long, so `camera_lost` comes within 2 s of a camera going away.
_ANSWER_S = 0.8
_WATCH_S = 0.1  # how often the watch thread looks


def load_aravis() -> Any:
    """The Aravis module (gi.repository.Aravis 0.8), or UserError naming what to install."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as err:
        raise UserError(f"{INSTALL_HINT} ({err})") from None
    return Aravis


class GenICamCamera:
    """The station's camera interface (start, grab, probe, close, status) on an Aravis camera."""

    def __init__(
        self,
        settings: GenICamSettings,
        stall_timeout_s: float = 1.5,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 10.0,
        max_frame_age_ms: float = 500.0,
        frames_after_trigger: int = 2,
        on_status: Callable[[str, str], None] | None = None,
        open_timeout_s: float = 15.0,
    ):
        self.aravis = load_aravis()  # refused in one line where Aravis is missing, before anything starts
        self.settings, self.mode = settings, settings.trigger
        self.name = f"genicam:{describe(settings)}"
        self.stall_timeout_s, self.open_timeout_s = stall_timeout_s, open_timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.max_frame_age_s = max_frame_age_ms / 1000
        self.frames_after_trigger = max(1, frames_after_trigger)
        self.on_status = on_status
        self.status, self.detail = "closed", ""
        self.frames = self.failures = self.incomplete = 0
        self.resend_requests = self.missing_packets = 0  # the stream's own counts, summed over connections
        self._stream_counts = (0, 0)  # this connection's, as last read
        self.last_frame_at = time.monotonic()
        self._busy_since: float | None = None  # when the camera's thread began a call the camera must answer
        self._answering = True  # False once a call went unanswered: the lost camera is not told to stop
        self._unanswered = False  # set by the watch thread: a call waited over _ANSWER_S
        self._incomplete_ids: deque[int] = deque(maxlen=32)  # frames that arrived with packets missing
        self._last_seen_id: int | None = None  # the newest frame id received, complete or not
        self.last_frame: Frame | None = None  # the frame the latest grab returned (its id and timestamp are logged)
        # The newest frames as received (raw: 8 of 5 MP Bayer8 are 40 MB): enough for a trigger's window.
        self._received: deque[Frame] = deque(maxlen=8)
        self._last_used: int | None = None
        self._cond = threading.Condition()
        self._requests: queue.SimpleQueue[tuple[str, Future, Any] | None] = queue.SimpleQueue()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._first_open: Future = Future()

    # -- the camera's thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the camera's thread and wait for its first open: a feature the camera refuses is a
        UserError here (exit 2 at start); a camera not found is 'lost' and looked for again."""
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="genicam", daemon=True)
            self._thread.start()
            threading.Thread(target=self._watch, name="genicam-watch", daemon=True).start()
        try:
            self._first_open.result(timeout=self.open_timeout_s)
        except UserError:
            self.close()
            raise
        except Exception as err:  # not there yet: the thread keeps looking
            log.warning("camera %s: %s", self.name, err)

    def _run(self) -> None:
        backoff = self.reconnect_min_s
        while not self._stopping:
            try:
                self._session()
                backoff = self.reconnect_min_s
            except UserError as err:  # a fresh exception: the traceback holds this thread's Aravis objects
                self._lost(f"{self.name}: {err}")  # start() stops the thread (close) if it still waits
                if not self._first_open.done():
                    self._first_open.set_exception(UserError(str(err)))
            except Exception as err:  # GLib.Error, CameraError: lost, looked for again
                self._lost(f"{self.name}: {getattr(err, 'message', None) or err}")
                if not self._first_open.done():
                    self._first_open.set_exception(CameraError(str(err)))
            self._refuse_requests()
            deadline = time.monotonic() + backoff
            backoff = min(self.reconnect_max_s, backoff * 2)
            with self._cond:
                while not self._stopping and time.monotonic() < deadline:
                    self._cond.wait(deadline - time.monotonic())

    def _session(self) -> None:
        """One connection: open, configure, stream until lost or stopping; always stops and drops
        the stream and the camera (in this thread)."""
        aravis = self.aravis
        camera = aravis.Camera.new(find_device(aravis, self.settings))
        stream = None
        self._answering, self._unanswered = True, False
        try:
            device = camera.get_device()
            if isinstance(device, aravis.GvDevice) and not device.is_controller():
                raise CameraError(
                    f"camera {describe(self.settings)} ({device.get_device_address().to_string()}) is held by another "
                    "controller: its control channel is taken (another vision program, an arv-viewer or a second "
                    "station); close that one, the station takes the camera when it is free"
                )
            del device
            pixel_format = configure(aravis, camera, self.name, self.settings)
            with self._cond:  # a new connection numbers its frames anew
                self._received.clear()
                self._incomplete_ids.clear()
                self._last_used = self._last_seen_id = None
            stream = camera.create_stream(None, None)
            if stream is None:
                raise CameraError("cannot open the camera's stream")
            if isinstance(stream, aravis.GvStream):  # lost packets are asked for again (GigE Vision resend)
                resend = aravis.GvStreamPacketResend
                stream.set_property("packet-resend", resend.ALWAYS if self.settings.packet_resend else resend.NEVER)
            self._stream_counts = (0, 0)
            payload = camera.get_payload()
            for _ in range(self.settings.buffers):
                stream.push_buffer(aravis.Buffer.new_allocate(payload))
            camera.start_acquisition()
            self._set("ok")
            if not self._first_open.done():
                self._first_open.set_result(pixel_format)
            log.info("camera %s: streaming %s, trigger %s", self.name, pixel_format, self.mode)
            self._stream(camera, stream)
        finally:
            if stream is not None:
                self._count_stream(stream)
            try:
                if stream is not None and self._answering:  # a camera that does not answer is not waited for
                    camera.stop_acquisition()
            except Exception:  # a camera that is gone cannot be stopped; it is dropped all the same
                log.debug("camera %s: stop_acquisition failed", self.name, exc_info=True)
            del stream, camera  # unreferenced here, in the thread that made them

    def _stream(self, camera: Any, stream: Any) -> None:
        device = camera.get_device()
        checked = time.monotonic()
        while not self._stopping:
            self._serve_requests(camera, device, stream)
            buffer = stream.timeout_pop_buffer(_POP_US)
            if buffer is not None:
                self._take(buffer)
                stream.push_buffer(buffer)
                del buffer
                self._count_stream(stream)
            now = time.monotonic()
            if self.mode == "free_run":
                if now - max(self.last_frame_at, checked) > self.stall_timeout_s:
                    raise CameraError(f"no frame within {self.stall_timeout_s:.1f} s (stalled)")
            elif now - checked > _HEALTH_S:  # no frames between triggers: ask the camera it is there
                with self._answer():
                    device.get_string_feature_value("TriggerMode")
                checked = now
                self._count_stream(stream)
                self._set("ok")

    def _take(self, buffer: Any) -> None:
        """A received buffer as a Frame (the image copied out: the buffer goes back to the stream)."""
        status = buffer.get_status()
        unfilled = (self.aravis.BufferStatus.CLEARED, self.aravis.BufferStatus.ABORTED)
        if status in unfilled:  # handed back empty (the stream starting or stopping): no frame lost
            return
        if status != self.aravis.BufferStatus.SUCCESS:
            with self._cond:
                self.incomplete += 1
                self._last_seen_id = buffer.get_frame_id()
                self._incomplete_ids.append(self._last_seen_id)
                self._cond.notify_all()
            if self.incomplete % 100 == 1:  # the first and every 100th: a lossy link must not flood the log
                log.warning(
                    "camera %s: frame %d incomplete (%s; %d so far: docs/cameras.md, GigE Vision on Linux)",
                    self.name, buffer.get_frame_id(), status.value_nick, self.incomplete,
                )  # fmt: skip
            return
        try:
            fmt = format_name(buffer.get_image_pixel_format())
        except PixelFormatError as err:
            log.warning("camera %s: %s", self.name, err)
            return
        frame = Frame(
            frame_id=buffer.get_frame_id(), camera_ts_ns=buffer.get_timestamp(),
            host_ns=buffer.get_system_timestamp() or time.time_ns(),  # a transport without it: when popped
            arrived=time.monotonic(), data=np.frombuffer(buffer.get_data(), np.uint8),
            width=buffer.get_image_width(), height=buffer.get_image_height(), pixel_format=fmt,
        )  # fmt: skip
        with self._cond:
            self._received.append(frame)
            self._last_seen_id = frame.frame_id
            self.frames += 1
            self.last_frame_at = frame.arrived
            self._cond.notify_all()
        self._set("ok")

    @contextmanager
    def _answer(self) -> Iterator[None]:
        """Around a call the camera must answer. The watch thread calls the camera lost when the call
        waits over _ANSWER_S; the connection then ends even if a reply comes later (a camera plugged in
        again answers the retried call, but it streams nowhere and has lost its features). A camera
        that did not answer is not told to stop (each unanswered call costs Aravis 2.5 s)."""
        self._busy_since = time.monotonic()
        try:
            yield
        except Exception:
            self._answering = False
            raise
        finally:
            self._busy_since = None
        if self._unanswered:
            self._answering = False
            raise CameraError(f"no reply within {_ANSWER_S:.1f} s: connecting again")

    def _watch(self) -> None:
        """Calls the camera lost when the camera's thread waits on it, or free-run frames stop, without
        touching any Aravis object (those belong to the camera's thread)."""
        while not self._stopping:
            now, busy = time.monotonic(), self._busy_since
            if self.status == "ok":
                if busy is not None and now - busy > _ANSWER_S:
                    self._unanswered = True
                    self._lost(f"{self.name}: not answering ({1000 * (now - busy):.0f} ms without a reply)")
                elif self.mode == "free_run" and now - self.last_frame_at > self.stall_timeout_s:
                    self._lost(f"{self.name}: no frame within {self.stall_timeout_s:.1f} s (stalled)")
            with self._cond:
                self._cond.wait(_WATCH_S)

    def _count_stream(self, stream: Any) -> None:
        """Add what the stream counted since the last read (resend requests, missing packets)."""
        if not isinstance(stream, self.aravis.GvStream):
            return
        now = (stream.get_info_uint64_by_name("n_resend_requests"), stream.get_info_uint64_by_name("n_missing_packets"))
        before, self._stream_counts = self._stream_counts, now
        with self._cond:
            self.resend_requests += max(0, now[0] - before[0])
            self.missing_packets += max(0, now[1] - before[1])

    def counters(self) -> dict[str, int]:
        """Frames received and lost, packets asked for again, reconnections (status, /metrics)."""
        with self._cond:
            return {
                "frames": self.frames, "incomplete": self.incomplete, "resend_requests": self.resend_requests,
                "missing_packets": self.missing_packets, "lost": self.failures,
            }  # fmt: skip

    def _serve_requests(self, camera: Any, device: Any, stream: Any) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is None or not request[1].set_running_or_notify_cancel():
                continue
            kind, future, settings = request
            if kind == "check":  # the setup page's save: new settings against this camera's tree
                try:
                    check_settings(self.aravis, camera, self.name, settings)
                    future.set_result(None)
                except UserError as err:  # a fresh one: the traceback holds this thread's Aravis objects
                    fresh = type(err)(str(err))
                    fresh.__dict__.update(err.__dict__)
                    future.set_exception(fresh)
                except Exception as err:
                    future.set_exception(CameraError(f"{self.name}: {getattr(err, 'message', err)}"))
                continue
            try:  # software trigger: what was received before the command is not its frame
                while (buffer := stream.timeout_pop_buffer(0)) is not None:
                    self._take(buffer)
                    stream.push_buffer(buffer)
                    del buffer
                with self._cond:
                    last_id = self._last_seen_id
                sent_ns = time.time_ns()
                with self._answer():
                    device.execute_command("TriggerSoftware")
                future.set_result((last_id, sent_ns))
            except Exception as err:
                future.set_exception(
                    CameraError(f"{self.name}: TriggerSoftware failed: {getattr(err, 'message', err)}")
                )
                raise

    def _refuse_requests(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is not None and request[1].set_running_or_notify_cancel():
                request[1].set_exception(CameraError(f"{self.name}: lost ({self.detail})"))

    # -- status --------------------------------------------------------------------------------------
    def _set(self, status: str, detail: str = "") -> None:
        with self._cond:
            if status == self.status and detail == self.detail:
                return
            changed = status != self.status
            self.status, self.detail = status, detail
        if changed:
            log.log(logging.WARNING if status == "lost" else logging.INFO, "camera %s %s", status, detail)
            if self.on_status:
                self.on_status(status, detail)

    def _lost(self, detail: str) -> None:
        with self._cond:
            if self.status != "lost":  # times lost, not attempts to find it again
                self.failures += 1
        self._set("lost", detail)

    # -- the camera interface -------------------------------------------------------------------------
    @property
    def can_fail(self) -> bool:
        return True

    def probe(self) -> bool:
        """Idle check (no frame consumed, no Aravis call here): the thread keeps the status."""
        self.start()
        return self.status == "ok"

    def grab(self, trigger_at: float | None = None) -> np.ndarray:
        """The frame for a trigger (``trigger_at``: when the station saw it, monotonic), as BGR."""
        self.start()
        if self.status == "lost":
            raise CameraError(f"{self.name}: lost ({self.detail}); reconnecting")
        if self.mode == "software":
            frame = self._grab_software()
        elif self.mode == "hardware":
            frame = self._grab_hardware(time.monotonic() if trigger_at is None else trigger_at)
        else:
            frame = self._grab_free_run()
        with self._cond:
            self._last_used = frame.frame_id
            self.last_frame = frame
        try:
            return to_bgr(frame.data, frame.width, frame.height, frame.pixel_format)
        except PixelFormatError as err:
            raise CameraError(f"{self.name}: frame {frame.frame_id}: {err}") from None

    def _wait_for(self, pick: Callable[[], Frame | None], deadline: float) -> Frame | None:
        with self._cond:
            while (frame := pick()) is None and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return frame

    def _grab_free_run(self) -> Frame:
        with self._cond:
            wanted = self.frames + self.frames_after_trigger
        frame = self._wait_for(
            lambda: self._received[-1] if self.frames >= wanted else None, time.monotonic() + self.stall_timeout_s
        )
        if frame is None:
            raise CameraError(f"{self.name}: no new frame within {self.stall_timeout_s:.1f} s")
        age = time.monotonic() - frame.arrived
        if age > self.max_frame_age_s:
            raise CameraError(f"{self.name}: newest frame is {1000 * age:.0f} ms old")
        return frame

    def _grab_software(self) -> Frame:
        future: Future = Future()
        self._requests.put(("trigger", future, None))
        try:
            last_id, sent_ns = future.result(timeout=self.stall_timeout_s)
        except FutureTimeout:
            future.cancel()
            raise CameraError(f"{self.name}: the camera's thread did not send TriggerSoftware") from None

        def pick() -> Frame | None:
            lost = next((i for i in self._incomplete_ids if is_after(i, last_id)), None)
            if lost is not None:  # the trigger's own frame came with packets missing: never an older one
                raise CameraError(f"{self.name}: frame {lost} of the trigger arrived incomplete (packets lost)")
            return for_software_trigger(self._received, last_id, sent_ns)

        frame = self._wait_for(pick, time.monotonic() + self.stall_timeout_s)
        if frame is None:
            raise CameraError(f"{self.name}: no frame within {self.stall_timeout_s:.1f} s of TriggerSoftware")
        return frame

    def _grab_hardware(self, trigger_at: float) -> Frame:
        window = self.max_frame_age_s
        frame = self._wait_for(
            lambda: for_hardware_trigger(self._received, trigger_at, window, self._last_used), trigger_at + window
        )
        if frame is None:
            raise CameraError(f"{self.name}: no frame within {1000 * window:.0f} ms of the trigger (max_frame_age_ms)")
        return frame

    def check_settings(self, settings: GenICamSettings) -> bool:
        """Check ``settings`` against this camera's feature tree without writing (FeatureError); False
        when it cannot be checked now (another camera, or this one not connected)."""
        if describe(settings) != describe(self.settings) or self.status != "ok":
            return False
        future: Future = Future()
        self._requests.put(("check", future, settings))
        try:
            future.result(timeout=self.stall_timeout_s + 5.0)
        except (FutureTimeout, CameraError):
            future.cancel()
            return False
        return True

    def close(self) -> None:
        """Stop the thread; it stops acquisition and drops the stream and the camera itself."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        self._requests.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)
            if thread.is_alive():
                log.warning("camera %s: its thread did not stop within 10 s", self.name)
        self.status = "closed"
