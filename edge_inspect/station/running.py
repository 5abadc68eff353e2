"""Whether a station runs on a storage folder, for the offline commands that should say so (``model
reference`` grabbing the camera the station uses, or building beside the line).

A started station holds a shared lock on ``<storage.dir>/station.lock``; the kernel drops it when the
process ends, however it ends, so a killed station leaves no stale mark. A command asks by trying an
exclusive lock without waiting (and lets it go at once)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "station.lock"


class RunningMark:
    """Held by a running station (``hold`` once started, ``release`` at its stop)."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def hold(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # a command's probe holds its exclusive lock for microseconds
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the lock


def station_running(data_dir: Path) -> bool:
    """Whether a station holds the mark of ``data_dir`` now. False where there is no mark to read."""
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the probe's own lock
    return False
