"""Frames a station should not be judging: another part on the fixture, a random scene, a covered
lens. Deterministic by seed, the size of the station's frames, BGR uint8 like ``render_part``. The
unfamiliar-frame guard is measured on them (benchmarks/unfamiliar_guard.py) and tested with them."""

from __future__ import annotations

import cv2
import numpy as np

COVER_KINDS = ("black", "uniform", "partial")


def flange(seed: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A round flange with a bore and a ring of bolts: a different part type on the same fixture
    (dark background, metal under the same kind of light, noise)."""
    rng = np.random.default_rng([seed, 11])
    bg = rng.uniform(25, 70)
    image = np.full((height, width, 3), bg, np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    cx, cy = width / 2 + rng.uniform(-0.05, 0.05) * width, height / 2 + rng.uniform(-0.05, 0.05) * height
    radius = min(width, height) * rng.uniform(0.36, 0.46)
    tone = rng.uniform(120, 210)
    cv2.circle(image, (int(cx), int(cy)), int(radius), (tone, tone, tone), -1, cv2.LINE_AA)
    cv2.circle(image, (int(cx), int(cy)), int(radius * rng.uniform(0.3, 0.45)), (bg, bg, bg), -1, cv2.LINE_AA)
    bolts = int(rng.integers(5, 9))
    ring = radius * rng.uniform(0.65, 0.8)
    start = rng.uniform(0, 2 * np.pi)
    for k in range(bolts):
        a = start + 2 * np.pi * k / bolts
        x, y = int(cx + ring * np.cos(a)), int(cy + ring * np.sin(a))
        cv2.circle(image, (x, y), int(radius * 0.09), (tone * 0.5,) * 3, -1, cv2.LINE_AA)
        cv2.circle(image, (x, y), int(radius * 0.05), (tone * 1.1,) * 3, -1, cv2.LINE_AA)
    return _finish(rng, image)


def random_scene(seed: int, width: int = 320, height: int = 240) -> np.ndarray:
    """Random coloured shapes on a random background: whatever else the camera might see (a person,
    a tool, the hall)."""
    rng = np.random.default_rng([seed, 12])
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image += (rng.uniform(-60, 60) * (xx / width - 0.5) + rng.uniform(-60, 60) * (yy / height - 0.5))[..., None]
    for _ in range(int(rng.integers(3, 12))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        size = int(rng.uniform(0.05, 0.35) * min(width, height))
        shape = rng.integers(3)
        if shape == 0:
            cv2.circle(image, (x, y), size, color, -1, cv2.LINE_AA)
        elif shape == 1:
            cv2.rectangle(image, (x - size, y - size // 2), (x + size, y + size // 2), color, -1)
        else:
            x2, y2 = int(rng.uniform(0, width)), int(rng.uniform(0, height))
            cv2.line(image, (x, y), (x2, y2), color, max(1, size // 6), cv2.LINE_AA)
    return _finish(rng, image)


def covered(seed: int, frame: np.ndarray, kind: str) -> np.ndarray:
    """``frame`` seen through a covered lens: ``black`` (a cap: near-black with sensor noise),
    ``uniform`` (a cloth or a sheet close to the lens: one flat, blurred tone), ``partial`` (something
    in front of 40–70 % of the view, dark and out of focus; the rest of the part still visible)."""
    if kind not in COVER_KINDS:
        raise ValueError(f"cover kind {kind!r}: choose {', '.join(COVER_KINDS)}")
    rng = np.random.default_rng([seed, 13])
    height, width = frame.shape[:2]
    image = frame.astype(np.float32)
    if kind == "black":
        image[:] = rng.uniform(0, 12)
    elif kind == "uniform":
        image[:] = rng.uniform(40, 230, 3)
        yy = np.mgrid[0:height, 0:width][0].astype(np.float32)
        image += (rng.uniform(-20, 20) * (yy / height - 0.5))[..., None]
    else:
        share = rng.uniform(0.4, 0.7)
        mask = np.zeros((height, width), np.float32)
        side = int(rng.integers(4))
        if side == 0:
            mask[:, : int(share * width)] = 1
        elif side == 1:
            mask[:, int((1 - share) * width) :] = 1
        elif side == 2:
            mask[: int(share * height)] = 1
        else:
            mask[int((1 - share) * height) :] = 1
        soft = cv2.GaussianBlur(mask, (0, 0), 0.06 * min(width, height))[..., None]
        tone = rng.uniform(5, 60)
        image = image * (1 - soft) + tone * soft
    return _finish(rng, image)


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Sensor noise and 8 bits, as the generated parts get."""
    image = image + rng.normal(0, rng.uniform(1.5, 5), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
