"""GenICam pixel formats (PFNC) to the BGR frames the rest of the station takes (what cv2.imread
gives: the model pipeline converts BGR to RGB itself).

Bayer names differ between GenICam and OpenCV: GenICam names the colours of the first two pixels
of the first row (BayerRG8: R G / G B), OpenCV those of the second and third pixels of the second
row, so GenICam's BayerRG8 is OpenCV's BayerBG (a test demosaics a known mosaic to check it).
"""

from __future__ import annotations

import cv2
import numpy as np

# PFNC codes (GigE Vision / USB3 Vision pixel formats) of the formats the station converts.
PFNC = {
    0x01080001: "Mono8",
    0x01100007: "Mono16",
    0x01080009: "BayerRG8",
    0x0108000A: "BayerGB8",
    0x01080008: "BayerGR8",
    0x0108000B: "BayerBG8",
    0x02180014: "RGB8",
    0x02180015: "BGR8",
}
_BAYER = {
    "BayerRG8": cv2.COLOR_BayerBG2BGR,
    "BayerGB8": cv2.COLOR_BayerGR2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR,
    "BayerBG8": cv2.COLOR_BayerRG2BGR,
}


class PixelFormatError(ValueError):
    """A buffer the station cannot convert (format unknown, or its size does not match)."""


def format_name(code: int) -> str:
    """The PFNC name of ``code``, or PixelFormatError naming the code."""
    name = PFNC.get(code)
    if name is None:
        raise PixelFormatError(
            f"pixel format 0x{code:08x} is not one the station converts ({', '.join(PFNC.values())})"
        )
    return name


def to_bgr(data: bytes | np.ndarray, width: int, height: int, fmt: str) -> np.ndarray:
    """A camera buffer's image (tightly packed rows) as an 8-bit BGR array of height × width × 3."""
    raw = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray | memoryview) else data.reshape(-1)
    raw = raw.view(np.uint8)
    channels = 3 if fmt in ("RGB8", "BGR8") else 1
    depth = 2 if fmt == "Mono16" else 1
    need = width * height * channels * depth
    if raw.size < need:
        raise PixelFormatError(f"{fmt} {width}x{height} needs {need} bytes, the buffer has {raw.size}")
    raw = raw[:need]
    if fmt == "Mono8":
        return cv2.cvtColor(raw.reshape(height, width), cv2.COLOR_GRAY2BGR)
    if fmt == "Mono16":  # little-endian 16-bit; the top 8 bits are what a person sees
        mono = (raw.view("<u2").reshape(height, width) >> 8).astype(np.uint8)
        return cv2.cvtColor(mono, cv2.COLOR_GRAY2BGR)
    if fmt in _BAYER:
        return cv2.cvtColor(raw.reshape(height, width), _BAYER[fmt])
    if fmt == "RGB8":
        return cv2.cvtColor(raw.reshape(height, width, 3), cv2.COLOR_RGB2BGR)
    if fmt == "BGR8":
        return raw.reshape(height, width, 3).copy()
    raise PixelFormatError(f"pixel format {fmt} is not one the station converts ({', '.join(PFNC.values())})")
