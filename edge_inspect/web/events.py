"""Fan-out of station events to server-sent-event clients."""

from __future__ import annotations

import asyncio
import json


class Broadcaster:
    def __init__(self, loop: asyncio.AbstractEventLoop, max_queue: int = 100):
        self._queues: set[asyncio.Queue] = set()
        self.loop = loop
        self.max_queue = max_queue

    def publish(self, event: dict) -> None:
        """Safe from any thread (alarms may come from the inspection worker)."""
        self.loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict) -> None:
        """Slow clients lose old events; the station is never blocked."""
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


def sse(event: dict) -> str:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event, default=str)}\n\n"
