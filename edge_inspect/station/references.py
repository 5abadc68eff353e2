"""The unfamiliar-frame guard's references on disk, and building them from commissioning frames.

```
<storage.dir>/references/
  <model version>/recipe-<n>.npz   one recipe's reference for one model version (features change
                                   with the model): per view, the mean, the inverse covariance and
                                   the threshold; ``meta`` (JSON) says when, from what, how calibrated
  frames/frame-NNNN.png            the commissioning frames last used, kept so that the reference of
                                   another version (a candidate, a rollback) is built from the same ones
```

Everything here blocks (files, the model): commands and worker threads only, never the event loop.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..camera.images import images_in
from ..config import Recipe
from ..durable import write_durably
from ..errors import UserError
from ..inspection.familiarity import DEFAULT_QUANTILE, MIN_FRAMES, ViewReference, fit_reference
from ..inspection.inspector import view_key, views
from ..vlm import VisionLanguageModel

FOLDER = "references"
FORMAT = 1


@dataclass(frozen=True)
class RecipeReference:
    """One recipe's reference for one model version: its views by key, and what the file says."""

    views: dict[str, ViewReference]
    meta: dict


def folder_of(data_dir: Path) -> Path:
    return data_dir / FOLDER


def reference_path(data_dir: Path, version: str, recipe: int) -> Path:
    return folder_of(data_dir) / version / f"recipe-{recipe}.npz"


def frames_folder(data_dir: Path) -> Path:
    return folder_of(data_dir) / "frames"


def save(path: Path, reference: RecipeReference) -> None:
    arrays: dict[str, np.ndarray] = {}
    views_meta = []
    for i, (key, ref) in enumerate(reference.views.items()):
        arrays[f"mean_{i}"] = ref.mean.astype(np.float32)
        arrays[f"precision_{i}"] = ref.precision.astype(np.float32)
        views_meta.append({
            "key": key, "threshold": ref.threshold, "frames": ref.frames, "shrinkage": ref.shrinkage,
            "holdout_median": ref.holdout[0], "holdout_p99": ref.holdout[1], "holdout_max": ref.holdout[2],
        })  # fmt: skip
    meta = {**reference.meta, "format": FORMAT, "views": views_meta}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, buffer.getvalue())


def load(path: Path) -> RecipeReference:
    """Raises ValueError (one line) for a file that is not a reference of this format."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: reference format {meta.get('format')!r}, this release reads {FORMAT}")
            refs = {}
            for i, v in enumerate(meta["views"]):
                refs[str(v["key"])] = ViewReference(
                    mean=data[f"mean_{i}"].astype(np.float64),
                    precision=data[f"precision_{i}"].astype(np.float64),
                    threshold=float(v["threshold"]),
                    frames=int(v["frames"]),
                    shrinkage=float(v["shrinkage"]),
                    holdout=(float(v["holdout_median"]), float(v["holdout_p99"]), float(v["holdout_max"])),
                )
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
        if isinstance(err, ValueError) and str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable reference ({type(err).__name__}: {err})") from None
    return RecipeReference(refs, meta)


def pooled_views(model: VisionLanguageModel, frame: np.ndarray, recipe: Recipe) -> dict[str, np.ndarray]:
    """The pooled features of each of the recipe's views of ``frame`` (BGR), as an inspection computes
    them (the vision graph only: no prompt is asked)."""
    height, width = frame.shape[:2]
    out = {}
    for box in views(recipe, width, height):
        view = frame if box is None else frame[box[1] : box[3], box[0] : box[2]]
        pooled = model.encode(view, order="bgr", reuse_prefix=False).pooled
        if pooled is not None:
            out[view_key(box)] = pooled
    return out


def build(
    model: VisionLanguageModel,
    frames: Sequence[np.ndarray],
    recipes: Iterable[Recipe],
    data_dir: Path,
    source: str,
    quantile: float = DEFAULT_QUANTILE,
) -> list[tuple[Path, RecipeReference]]:
    """Fit and save each recipe's reference for ``model``'s version from ``frames``; returns them."""
    if len(frames) < MIN_FRAMES:
        raise UserError(f"a reference needs at least {MIN_FRAMES} frames, got {len(frames)}")
    written = []
    for recipe in recipes:
        vectors: dict[str, list[np.ndarray]] = {}
        for frame in frames:
            for key, vector in pooled_views(model, frame, recipe).items():
                vectors.setdefault(key, []).append(vector)
        refs = {key: fit_reference(np.stack(v), quantile) for key, v in vectors.items()}
        meta = {
            "version": model.sha256, "recipe": recipe.number, "recipe_name": recipe.name,
            "recipe_sha256": recipe.sha256(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "frames": len(frames), "frame_size": list(frames[0].shape[1::-1]), "source": source, "quantile": quantile,
        }  # fmt: skip
        reference = RecipeReference(refs, meta)
        path = reference_path(data_dir, model.sha256, recipe.number)
        save(path, reference)
        written.append((path, reference))
    return written


def keep_frames(data_dir: Path, frames: Sequence[np.ndarray]) -> Path:
    """Keep ``frames`` as the commissioning frames (PNG), replacing the ones kept before as a whole."""
    target = frames_folder(data_dir)
    fresh = target.with_name(f".frames.{time.time_ns()}")
    fresh.mkdir(parents=True)
    for i, frame in enumerate(frames):
        if not cv2.imwrite(str(fresh / f"frame-{i:04d}.png"), frame):
            shutil.rmtree(fresh, ignore_errors=True)
            raise UserError(f"{fresh}: the commissioning frames cannot be written")
    old = target.with_name(f".frames.old.{time.time_ns()}")
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_frames(folder: Path, limit: int | None = None) -> list[np.ndarray]:
    """The images of ``folder`` (camera.images.IMAGE_SUFFIXES), by name; one line for a folder without any."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    names = images_in(folder)
    frames = []
    for p in names[:limit] if limit else names:
        frame = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if frame is None:
            raise UserError(f"{p}: not an image OpenCV can read")
        frames.append(frame)
    if not frames:
        raise UserError(f"{folder}: no image files")
    return frames


def prepare(model: VisionLanguageModel, recipes: list[Recipe], data_dir: Path) -> list[Path]:
    """A version about to judge (the model follower loads it beside the running one, in a worker
    thread): the recipes it has no reference for get one from the kept commissioning frames, when
    there are some. Returns the files written."""
    missing = [r for r in recipes if not reference_path(data_dir, model.sha256, r.number).exists()]
    folder = frames_folder(data_dir)
    if not missing or not folder.is_dir():
        return []
    built = build(model, read_frames(folder), missing, data_dir, "kept commissioning frames")
    return [path for path, _ in built]
