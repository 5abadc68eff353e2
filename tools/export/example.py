"""End-to-end example on a small random Molmo2: checkpoint → bundle → verify → inspect one image.

The model is untrained, so its answers are arbitrary; the run shows every stage working on the
real architecture, with the real runtime, in a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.cli import main as edge_inspect_main
from tools.molmo2.tiny import make_tiny_checkpoint

from .onnx_bundle import export_bundle


def draw_part(height: int = 240, width: int = 320, screws: int = 4, seed: int = 0) -> np.ndarray:
    """A grey plate with screws in its corners and a scratch, as a BGR frame."""
    rng = np.random.default_rng(seed)
    frame = np.full((height, width, 3), 40, np.uint8)
    cv2.rectangle(frame, (30, 30), (width - 30, height - 30), (170, 170, 170), -1)
    corners = [(50, 50), (width - 50, 50), (50, height - 50), (width - 50, height - 50)]
    for x, y in corners[:screws]:
        cv2.circle(frame, (x, y), 9, (90, 90, 90), -1)
        cv2.line(frame, (x - 6, y), (x + 6, y), (30, 30, 30), 2)
    cv2.line(frame, (120, 90), (200, 140), (230, 230, 230), 1)
    noise = rng.normal(0, 4, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def run_example(work: Path) -> int:
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_tiny_checkpoint(work / "checkpoint")
    print(f"1. small random Molmo2 checkpoint: {checkpoint}")
    bundle = export_bundle(checkpoint, work / "bundle", overwrite=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    print(f"2. exported bundle: {bundle} ({', '.join(manifest['files'])})")
    image = work / "part.png"
    cv2.imwrite(str(image), draw_part())
    print(f"3. test image: {image}")
    print("4. edge-inspect model verify:")
    if rc := edge_inspect_main(["model", "verify", str(bundle)]):
        return rc
    print("5. edge-inspect model ask (untrained model: answers are arbitrary, timings are real):")
    return edge_inspect_main([
        "model", "ask", str(bundle), str(image), "--point", "Point to the screws.",
        "--yes-no", "Is the label present?", "--max-new-tokens", "16",
    ])  # fmt: skip
