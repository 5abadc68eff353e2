"""QA played from ground truth on generated parts: an export folder in the format ``edge-inspect
dataset export`` writes (docs/model-lifecycle.md, "Labels from review"), without a station.

The pilot fine-tune and the tests use it where a station's reviewed log is not at hand: the parts a
line with a new defect kind would send to review, each part's defect check corrected to the true
points (the reviewer removed the model's wrong points and added the missed ones), so every record is
``corrected`` with the disposition ``missed_defect`` (a correction on a part the model passed) or
``confirmed_defect`` (``--disposition``). Images are named by their sha256 and the holdout split is
the export's own (``edge_inspect.commands.dataset.holdout``), so records stay on their side as more
seeds are added. The holdout side also gets the objects' masks (``masks/``), so that
``tools.distill evaluate --data OUT/holdout.jsonl`` can score it; a real export has no masks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.commands.dataset import holdout
from edge_inspect.sim import PartSpec, render_part
from edge_inspect.vlm.points import format_molmo2_points

from .dataset import FRAME
from .tasks import TASKS

CHECK = "surface"  # the demo station's defect check
PROMPT = TASKS["defects"][0]


def write_review_export(
    out: Path,
    seeds: range,
    kinds: tuple[str, ...],
    defect_counts: tuple[int, ...] = (1, 1, 2),
    station: str = "sim-line",
    reviewer: str = "qa-sim",
    model: str | None = None,
    disposition: str = "missed_defect",
) -> dict[str, int]:
    """Write ``out``/train.jsonl, holdout.jsonl, images/ and masks/ for ``seeds``; the counts written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    counts = {"train": 0, "holdout": 0}
    with open(out / "train.jsonl", "w") as train, open(out / "holdout.jsonl", "w") as held:
        for seed in seeds:
            n = int(np.random.default_rng([seed, 53]).choice(defect_counts))
            part = render_part(seed, *FRAME, spec=PartSpec(defects=n, defect_kinds=kinds))
            ok, png = cv2.imencode(".png", part.image)
            assert ok
            digest = hashlib.sha256(png.tobytes()).hexdigest()
            image = f"images/{digest}.png"
            (out / image).write_bytes(png.tobytes())
            side = holdout(digest)
            masks = []
            if side:
                for k, obj in enumerate(part.defects):
                    masks.append(f"masks/{digest}_{k}.png")
                    cv2.imwrite(str(out / masks[-1]), obj.mask.astype(np.uint8) * 255)
            points = [
                [round(x, 4), round(y, 4)] for x, y in (o.normalized(part.width, part.height) for o in part.defects)
            ]
            record = {
                "image": image, "prompt": PROMPT, "task": CHECK, "kind": "point",
                "target": format_molmo2_points([(p[0], p[1]) for p in points], "defect"),
                "points": points, "masks": masks, "answer": None,
                "source": {"station": station, "inspection": seed, "ts": None, "reviewer": reviewer,
                           "disposition": disposition, "corrected": True, "model": model, "image_sha256": digest,
                           "kinds": [o.kind for o in part.defects]},
            }  # fmt: skip
            (held if side else train).write(json.dumps(record) + "\n")
            counts["holdout" if side else "train"] += 1
    return counts
