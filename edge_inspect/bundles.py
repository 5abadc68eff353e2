"""Where model bundles are found: a path, or a bare name looked up on the bundle search path.

``model.bundle`` in station.yaml is either a path (absolute, or relative to the config file) or a
bare name such as ``demo-student``, looked up in order in:

1. each folder of ``$EDGE_INSPECT_MODELS`` (colon-separated);
2. ``models/`` of a source checkout (next to the ``edge_inspect`` package);
3. ``<sys.prefix>/share/edge-inspect/models`` — where ``pip install`` puts the bundled demo student;
4. ``/usr/local/share/edge-inspect/models`` and ``/usr/share/edge-inspect/models``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "EDGE_INSPECT_MODELS"
DEMO_BUNDLE = "demo-student"


def search_path() -> list[Path]:
    folders = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    folders.append(Path(__file__).resolve().parent.parent / "models")
    folders += [
        Path(sys.prefix) / "share/edge-inspect/models",
        Path("/usr/local/share/edge-inspect/models"),
        Path("/usr/share/edge-inspect/models"),
    ]
    return folders


def is_bare_name(value: str) -> bool:
    return bool(value) and "/" not in value and os.sep not in value and value not in (".", "..")


def find_bundle(value: str, base_dir: Path) -> tuple[Path | None, list[Path]]:
    """The bundle folder ``value`` names (one with a manifest.json), and every place looked at."""
    path = Path(value).expanduser()
    candidates = [path if path.is_absolute() else (base_dir / path).resolve()]
    if is_bare_name(value):
        candidates += [folder / value for folder in search_path()]
    for candidate in candidates:
        if (candidate / "manifest.json").is_file():
            return candidate, candidates
    return None, candidates
