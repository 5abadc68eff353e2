"""Write a bundle folder all at once: into a temporary folder beside the target, renamed into place
only when complete. A failed run leaves nothing behind, and an existing bundle (``--overwrite``)
is replaced only by a finished one."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.molmo2.errors import CheckpointError

log = logging.getLogger(__name__)


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse a target that exists (unless ``overwrite``) or is not a folder, before any work."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{out}: exists and is not empty (pass --overwrite to replace it)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``out``; on success it becomes ``out``."""
    out = Path(out)
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        check_target(out, overwrite)  # someone may have written there meanwhile
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.replaced-{tmp.name.rsplit('-', 1)[-1]}"
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log.info("%s written", out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
