"""Which camera frame belongs to which trigger (GenICam cameras, docs/cameras.md).

Pure functions over the frames a camera has received, so that the rules are tested without a
camera: a frame is used at most once, never one older than a frame already used, and a trigger
with no frame of its own gets none (ERROR, code 2) rather than an older one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# GigE Vision 1.x frame ids are 16 bits and skip 0 when they wrap; GigE Vision 2 / USB3 Vision ids are 64 bits.
_WRAP_16 = 1 << 16


def is_after(frame_id: int, other: int | None) -> bool:
    """Whether ``frame_id`` comes after ``other`` in the camera's sequence (16-bit ids wrap)."""
    if other is None:
        return True
    if frame_id > other:
        return not (other < 0x1000 and frame_id >= _WRAP_16 - 0x1000)  # an id from before a wrap
    return other < _WRAP_16 and other >= _WRAP_16 - 0x1000 and frame_id < 0x1000  # wrapped past 65535


@dataclass(frozen=True)
class Frame:
    """A frame as received: the camera's id and timestamp, the host's arrival time, the raw image."""

    frame_id: int
    camera_ts_ns: int  # the camera's own clock (GenICam timestamp)
    host_ns: int  # the host's wall clock when the frame started to arrive (Aravis' system timestamp)
    arrived: float  # time.monotonic() when the station had the whole frame
    data: np.ndarray
    width: int
    height: int
    pixel_format: str


def for_software_trigger(frames: Iterable[Frame], last_id: int | None, sent_ns: int) -> Frame | None:
    """The frame a TriggerSoftware produced: the first after ``last_id`` (the newest frame received
    before the command was sent) that the host began to receive after the command (``sent_ns``)."""
    for frame in frames:
        if is_after(frame.frame_id, last_id) and frame.host_ns >= sent_ns:
            return frame
    return None


def for_hardware_trigger(
    frames: Iterable[Frame], trigger_at: float, window_s: float, last_used: int | None
) -> Frame | None:
    """The frame of a line trigger the PLC also saw at ``trigger_at`` (monotonic): the first frame
    after the last one used that arrived within ``window_s`` of the trigger, either side (the
    camera's frame may arrive before the PLC's poll sees the trigger)."""
    for frame in frames:
        if not is_after(frame.frame_id, last_used):
            continue
        if trigger_at - window_s <= frame.arrived <= trigger_at + window_s:
            return frame
    return None
