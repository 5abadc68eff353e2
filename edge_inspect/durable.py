"""Replacing a file so that a crash leaves either the old or the new one, never half of either."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a unique temporary file beside ``path``, fsync it, rename it into place and
    fsync the folder. A file that exists keeps its mode and group (a station.yaml holds password
    hashes: the process's umask must not widen it); a new one gets the umask's mode."""
    old = os.stat(path) if path.exists() else None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if old is not None:
            os.fchmod(fd, old.st_mode & 0o7777)
            try:
                os.fchown(fd, -1, old.st_gid)
            except PermissionError:  # not a member of that group: the mode still holds
                pass
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
