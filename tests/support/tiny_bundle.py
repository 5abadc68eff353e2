"""The tests' tiny Molmo2 bundle, made once and handed to other interpreters.

The export toolchain needs torch, which this project pins for Python 3.11 only. The appliance's
tests on Python 3.10 and 3.12 (.ci/run) load the same tiny bundle, exported by 3.11 beforehand:

    .venv/bin/python -m tests.support.tiny_bundle work/tiny-bundle
    EDGE_INSPECT_TEST_BUNDLE=work/tiny-bundle .venv310/bin/python -m pytest --appliance-only
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ENV = "EDGE_INSPECT_TEST_BUNDLE"
SEED = 0


def make(folder: Path) -> Path:
    """A random tiny Molmo2 checkpoint (``folder``/checkpoint) exported to a bundle (``folder``/tiny)."""
    from tools.export.onnx_bundle import export_bundle
    from tools.molmo2.tiny import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(folder / "checkpoint" / "tiny-molmo2", seed=SEED)
    return export_bundle(checkpoint, folder / "tiny")


def main() -> int:
    parser = argparse.ArgumentParser(description="Export the tests' tiny bundle to FOLDER/tiny.")
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args().folder
    shutil.rmtree(folder, ignore_errors=True)
    print(make(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
