"""What the station's events feed on the web's side: the fan-out to the open event streams
(/api/events) and the cycle-time histogram (/metrics). Both live on the WebContext."""

from __future__ import annotations

import asyncio

from ..station.events import Event, InspectionDone, Stopped


class Broadcaster:
    """Hands each event to every connected client's queue; slow clients lose old events and the
    station is never blocked."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_queue: int = 100):
        self._queues: set[asyncio.Queue] = set()
        self.loop = loop
        self.max_queue = max_queue
        self.closed = False

    def on_event(self, event: Event) -> None:
        if isinstance(event, Stopped):
            self.closed = True
        self.publish(event.to_dict())

    def publish(self, event: dict) -> None:
        """Safe from any thread."""
        self.loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict) -> None:
        for q in list(self._queues):
            if q.full():
                q.get_nowait()
            q.put_nowait(event)

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.max_queue)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._queues.discard(q)


CYCLE_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)


class CycleHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(CYCLE_BUCKETS_MS) + 1)
        self.total_ms = 0.0

    def on_event(self, event: Event) -> None:
        if isinstance(event, InspectionDone):
            self.observe(event.timings_ms.get("cycle_ms", 0.0))

    def observe(self, cycle_ms: float) -> None:
        self.total_ms += cycle_ms
        for i, bound in enumerate(CYCLE_BUCKETS_MS):
            if cycle_ms <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1
