"""The short soak in the suite (benchmarks/soak.py is the long one): a real station (the model, its log,
the web's event broadcaster with a browser tab that stopped reading, the HTMI's own stream) keeps its
Python memory and its threads flat over hundreds of inspections. Every collection that grows with
inspections, events or clients is bounded; making one unbounded (e.g. the event stream queue of a
stalled client) makes this test fail."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc

from edge_inspect.web.feeds import Broadcaster

from ..support.web import run_api

WARMUP, MEASURED = 60, 240
BYTES_PER_INSPECTION = 400  # what Python may keep per inspection after warm-up (noise, caches filling)


def test_python_memory_and_threads_stay_flat_over_hundreds_of_inspections(tmp_path, tiny_bundle):
    async def scenario(station, client):
        stalled = Broadcaster(asyncio.get_running_loop())  # a browser tab that stopped reading its stream
        station.events.subscribe(stalled.on_event)
        never_read = stalled.subscribe()
        reading = Broadcaster(asyncio.get_running_loop())
        station.events.subscribe(reading.on_event)
        live = reading.subscribe()
        tracemalloc.start(5)  # from the start: what is replaced each inspection (the last frame) shows in both
        for i in range(WARMUP):
            await station.inspect(1 + i % 2, part_id=f"W{i}")
            while not live.empty():
                live.get_nowait()
        await client.get("/review")  # the worker threads that serve the pages exist from now on
        await client.get("/api/inspections.csv")
        await asyncio.sleep(0.1)
        gc.collect()
        threads_before = threading.active_count()
        before = tracemalloc.take_snapshot()
        for i in range(MEASURED):
            await station.inspect(1 + i % 2, part_id=f"P{i}")
            while not live.empty():
                live.get_nowait()
            if i % 50 == 0:  # a QA engineer now and then
                await client.get("/review")
                await client.get("/api/inspections.csv")
        await asyncio.sleep(0.1)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        top = [str(s) for s in after.compare_to(before, "lineno")[:12]]
        return grown, top, threads_before, threading.active_count(), never_read.qsize()

    grown, top, threads_before, threads_after, stalled_queue = run_api(tmp_path, tiny_bundle, scenario)
    assert grown <= MEASURED * BYTES_PER_INSPECTION, (grown, top)
    assert threads_after <= threads_before, (threads_before, threads_after)
    assert stalled_queue <= 100  # the stalled client's queue holds the newest 100 events, no more


def test_the_allocator_is_held_to_two_arenas_and_a_fixed_mmap_threshold_unless_the_operator_chose():
    """glibc's settings for a station process (station/allocator.py); the soak shows what they are for."""
    import os
    import subprocess
    import sys

    from edge_inspect.station import allocator

    if allocator._LIBC is None:
        import pytest

        pytest.skip("not glibc: the allocator is left as it is")
    probe = "from edge_inspect.station import allocator; print(allocator.tune()); allocator.trim()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    said = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert said.stdout.strip() == "2 arenas, blocks over 128 KiB mapped"
    env["MALLOC_ARENA_MAX"] = "4"  # set by the operator (a systemd drop-in): kept
    said = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert said.stdout.strip() == "blocks over 128 KiB mapped"


def test_memory_figures_follow_what_glibc_and_sqlite_hold():
    """/metrics' memory by holder is read from the allocator and SQLite themselves: a 20 MB buffer
    shows in ``malloc_in_use``, a filled in-memory database in ``sqlite``."""
    import sqlite3

    from edge_inspect.station.allocator import memory_figures

    before = memory_figures()
    if "malloc_in_use" not in before or "sqlite" not in before:
        import pytest

        pytest.skip(f"this C library or SQLite build does not report its memory: {sorted(before)}")
    buffer = bytearray(20_000_000)
    held = memory_figures()
    assert held["malloc_in_use"] - before["malloc_in_use"] >= 19_000_000
    del buffer
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(4000)])
    assert memory_figures()["sqlite"] - before["sqlite"] >= 1_500_000
    conn.close()
