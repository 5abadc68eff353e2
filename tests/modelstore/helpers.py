"""Bundles for the model store's tests: the tiny bundle, and copies of it that are other versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def other_version(tiny_bundle: Path, folder: Path, label: str) -> Path:
    """A copy of the tiny bundle whose manifest differs (its ``created``), hence another version of
    the same files: it loads and verifies like the original."""
    copy = Path(shutil.copytree(tiny_bundle, folder))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["created"] = f"{manifest.get('created', '')} {label}"
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def degraded_copy(bundle: Path, folder: Path) -> Path:
    """A copy of ``bundle`` that sees worse: its manifest normalises the frame with another spread
    (image_std 0.8 instead of 0.5), so every crop reaches the vision tower dimmer than it was trained
    on. Its files verify and it loads; on generated parts it finds fewer screws and empty holes."""
    copy = Path(shutil.copytree(bundle, folder))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocess"]["image_std"] = [0.8, 0.8, 0.8]
    manifest["created"] = f"{manifest.get('created', '')} degraded"
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def unrunnable_copy(bundle: Path, folder: Path) -> Path:
    """A copy of ``bundle`` that loads but cannot judge a frame: its manifest cuts crops of twice the
    size its vision graph was exported for, which refuses them (ONNX Runtime: invalid dimensions)."""
    copy = Path(shutil.copytree(bundle, folder))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocess"]["crop_size"] *= 2
    manifest["created"] = f"{manifest.get('created', '')} unrunnable"
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy
