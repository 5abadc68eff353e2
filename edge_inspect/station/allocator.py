"""glibc's allocator held to the station's working set over weeks of parts (docs/performance.md, "Memory").

Left to its defaults, glibc gives each thread that allocates its own arena (up to 8 per core) and
raises its mmap threshold every time a large block is freed, so the big strings of a CSV export or
a review page later come from an arena instead of a mapping of their own. Freed, they leave holes that
each arena keeps: the station's RSS rose with every review + CSV load and never came back. Two
arenas, a fixed mmap threshold and a periodic ``malloc_trim`` keep it flat. Where the C library is
not glibc (musl, macOS) this does nothing; a ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_``
in the environment is the operator's choice and wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
M_ARENA_MAX = -8
ARENA_MAX = 2  # the event loop's thread and the worker threads share two arenas
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed: larger blocks are mapped and unmapped
TRIM_EVERY_S = 60.0


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def tune() -> str:
    """Call once at start, before the worker threads: says what it set ("" where nothing was)."""
    if _LIBC is None:
        return ""
    done = []
    if "MALLOC_ARENA_MAX" not in os.environ and _LIBC.mallopt(M_ARENA_MAX, ARENA_MAX):
        done.append(f"{ARENA_MAX} arenas")
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        done.append(f"blocks over {MMAP_THRESHOLD // 1024} KiB mapped")
    return ", ".join(done)


def trim() -> None:
    """Hand the free memory at the top and in the middle of every arena back to the system
    (a few ms; call it from a worker thread, not the event loop)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _sqlite_memory_used() -> Callable[[], int] | None:
    """SQLite's own count of the bytes it holds (page caches, schemas, statements), read from the
    library the sqlite3 module runs on (linked in or shared: the symbol is found either way)."""
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)
        used = lib.sqlite3_memory_used
    except (ImportError, OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    return used


_SQLITE_USED = _sqlite_memory_used()


def memory_figures() -> dict[str, int]:
    """Where the process's memory is, in bytes: glibc's blocks in use and free-but-kept (a growing
    ``malloc_free`` is fragmentation, a growing ``malloc_in_use`` something that keeps objects),
    SQLite's share, and Python's count of its live blocks. Keys missing where the C library or
    SQLite build does not tell. Microseconds; safe on the event loop."""
    figures: dict[str, int] = {"python_blocks": sys.getallocatedblocks()}
    if _LIBC is not None and hasattr(_LIBC, "mallinfo2"):
        _LIBC.mallinfo2.restype = _Mallinfo2
        info = _LIBC.mallinfo2()
        figures["malloc_in_use"] = info.uordblks + info.hblkhd
        figures["malloc_free"] = info.fordblks
    if _SQLITE_USED is not None:
        figures["sqlite"] = int(_SQLITE_USED())
    return figures
