"""What the setup endpoints keep between requests, on the station web's context: the gate that lets
one try run at a time, the live view's latest frame, and the worker thread that does their image work
off the loop that serves the PLC."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

TRY_MIN_INTERVAL_S = 1.0  # from the end of one try to the start of the next, while a PLC is connected
TRY_LINE_SHARE = 0.1  # while a PLC is connected, tries take at most this share of the time


UPLOAD_NICE = 10  # the try's decoding and drawing yield the CPU to the inspections and the loop


def _lower_priority() -> None:
    try:  # Linux: a thread's own nice value (its id is a task id)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPLOAD_NICE)
    except (AttributeError, OSError):
        pass


def upload_executor() -> ThreadPoolExecutor:
    """The thread that decodes uploads, draws and encodes a try's answer and encodes the live view's
    JPEG: one (tries run one at a time), at a lower CPU priority than the inspection thread and the
    event loop."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="try", initializer=_lower_priority)


class TryGate:
    """One *try* at a time and, while a PLC is connected, at least ``min_interval_s`` from the end of
    one to the start of the next. A try shares the model and the CPU with the PLC's inspections (it
    runs between them): an integrator clicking does not notice, uploads posted back to back cannot
    crowd out the line (benchmarks/upload_load.py: PLC cycle p50 1.12× instead of 1.84× with 4
    clients uploading maximum-size images, 1.01× with small ones; docs/performance-web.md)."""

    def __init__(
        self,
        min_interval_s: float = TRY_MIN_INTERVAL_S,
        line_share: float = TRY_LINE_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.min_interval_s, self.line_share, self.clock = min_interval_s, line_share, clock
        self.running, self.last, self.began, self.took = False, float("-inf"), 0.0, 0.0

    def enter(self, line_running: bool = True) -> int:
        """0 and the gate is taken; else the seconds to wait."""
        now = self.clock()
        if self.running:
            return 1
        interval = self.interval() if line_running else 0.0
        if now - self.last < interval:
            return max(1, math.ceil(interval - (now - self.last)))
        self.running, self.began = True, now
        return 0

    def interval(self) -> float:
        """The pause after a try while the line runs: at least ``min_interval_s``, and long enough that
        tries take at most ``line_share`` of the time (a 1 s try of a maximum-size image: 9 s)."""
        return max(self.min_interval_s, self.took * (1.0 / self.line_share - 1.0))

    def leave(self) -> None:
        self.running = False
        self.last = self.clock()
        self.took = self.last - self.began


@dataclasses.dataclass
class FrameCache:
    """The live view's latest frame as JPEG, and when it was grabbed (monotonic seconds)."""

    at: float = 0.0
    jpeg: bytes | None = None


@dataclasses.dataclass
class SetupState:
    """What the setup endpoints keep between requests: the live view's frame, the try's gate, and the
    worker thread that decodes, draws and encodes off the loop."""

    frame_cache: FrameCache = dataclasses.field(default_factory=FrameCache)
    gate: TryGate = dataclasses.field(default_factory=TryGate)
    worker: ThreadPoolExecutor = dataclasses.field(default_factory=upload_executor)

    async def off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)
