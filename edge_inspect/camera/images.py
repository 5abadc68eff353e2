"""Image files: the suffixes that the folder camera, ``try``, ``tune``, ``calibrate`` and the model tools
accept (all of them formats OpenCV reads), and the one way a folder's images are listed."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def images_in(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, in name order; none where it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
