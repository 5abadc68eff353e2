"""Runs one recipe on one part with the model: one image encoding per frame (or per ROI crop),
shared by every check that looks at it. A part may be seen by several cameras (views,
docs/cameras.md): each check looks at its view's frame."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..config import Check, QACheck, Recipe
from ..verdict import Verdict
from ..vlm import VisionLanguageModel
from ..vlm.batches import EncodedImage
from .checks import CheckOutcome, error_outcome, judge_points, judge_qa, verdict

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class View:
    """What the checks ``members`` looked at (a frame, or one ROI crop of it): its key, and the pooled
    image features of its encoding (vlm/features.py; None when the model failed on it)."""

    key: str
    members: tuple[int, ...]
    pooled: np.ndarray | None = None


@dataclass
class Inspection:
    verdict: Verdict
    outcomes: list[CheckOutcome]
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""
    views: list[View] = field(default_factory=list)


def crop_box(roi: list[tuple[float, float]], width: int, height: int) -> Box:
    xs = [p[0] for p in roi]
    ys = [p[1] for p in roi]
    x0, x1 = int(np.floor(min(xs) * width)), int(np.ceil(max(xs) * width))
    y0, y1 = int(np.floor(min(ys) * height)), int(np.ceil(max(ys) * height))
    return max(0, x0), max(0, y0), min(width, max(x1, x0 + 1)), min(height, max(y1, y0 + 1))


def view_key(box: Box | None, camera: str = "") -> str:
    """``frame``, or ``crop x0,y0,x1,y1`` (pixels): how references and logs name a view; a camera other
    than the first puts its name in front (``side:frame``), so the first camera's keys stay as they were."""
    key = "frame" if box is None else "crop " + ",".join(str(v) for v in box)
    return f"{camera}:{key}" if camera else key


def view_of(check: Check, first: str) -> str:
    """The camera a check looks at: the one it names, else the station's first."""
    return check.view or first


def views(
    recipe: Recipe, width: int, height: int, camera: str | None = None, first: str = ""
) -> dict[Box | None, list[int]]:
    """The recipe's views on a frame of this size: the crop box (None: the whole frame) of each
    group of checks that share one image encoding, with the indices of its checks. ``camera``: only
    the checks on that camera (``first`` is the camera of checks that name none)."""
    groups: dict[Box | None, list[int]] = {}
    for i, check in enumerate(recipe.checks):
        if camera is not None and view_of(check, first) != camera:
            continue
        box = crop_box(check.roi, width, height) if check.crop and check.roi else None
        groups.setdefault(box, []).append(i)
    return groups


@dataclass(frozen=True)
class _Group:
    """Checks that share one image encoding: a camera's frame, or a crop of it."""

    camera: str
    box: Box | None
    members: list[int]


# The views of a part through the vision graph in one run: not faster than one after the other on the
# CPUs measured (benchmarks/views_batch.py, docs/performance.md "Several cameras"), so off.
BATCH_VIEWS = False


class Inspector:
    """``batch_views``: the images of a part seen by several cameras go through the vision graph in one
    run (VisionLanguageModel.encode_many) instead of one after the other (docs/performance.md)."""

    def __init__(self, model: VisionLanguageModel, max_new_tokens: int = 96, batch_views: bool = BATCH_VIEWS):
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.batch_views = batch_views

    def run(self, frame_bgr: np.ndarray, recipe: Recipe) -> Inspection:
        """Every check of ``recipe`` on the one frame given (whatever view it names): `try`, `tune`, the
        setup page's try and a part seen by one camera. Checks that look at the same view (the frame,
        or one ROI crop) share one image encoding and one batched prefill; their pointing prompts are
        decoded together. A check's ``ms`` is the time of its group (the encoding and the batch it was
        answered in)."""
        height, width = frame_bgr.shape[:2]
        groups = [_Group("", box, members) for box, members in views(recipe, width, height).items()]
        return self._run(recipe, {"": frame_bgr}, groups, first="")

    def run_part(self, frames: Mapping[str, np.ndarray], recipe: Recipe, first: str) -> Inspection:
        """The checks of ``recipe`` on a part seen by several cameras: ``frames`` by camera name (in the
        station's order), each check on its view's frame (``first`` for a check that names none).
        Outcomes carry their view; the guard's view keys name the camera (view_key)."""
        groups = []
        for camera, frame in frames.items():
            height, width = frame.shape[:2]
            for box, members in views(recipe, width, height, camera, first).items():
                groups.append(_Group(camera, box, members))
        return self._run(recipe, frames, groups, first)

    def _encode(self, images: list[np.ndarray], batched: bool) -> list[EncodedImage | Exception]:
        """Each image encoded (or the error it raised): in one vision run when ``batched``."""
        if batched and len(images) > 1:
            try:
                return list(self.model.encode_many(images, order="bgr"))
            except Exception:  # noqa: BLE001 - one by one, so that each image's own error is the one reported
                pass
        out: list[EncodedImage | Exception] = []
        for image in images:
            try:
                out.append(self.model.encode(image, order="bgr"))
            except Exception as err:  # noqa: BLE001 - a model failure makes its checks ERROR, never PASS
                out.append(err)
        return out

    def _run(self, recipe: Recipe, frames: Mapping[str, np.ndarray], groups: list[_Group], first: str) -> Inspection:
        timings: dict[str, float] = {
            "preprocess_ms": 0.0,
            "vision_ms": 0.0,
            "prefill_ms": 0.0,
            "decode_ms": 0.0,
            "decode_tokens": 0.0,
        }
        outcomes: list[CheckOutcome | None] = [None] * len(recipe.checks)
        seen: list[View] = []
        start = time.perf_counter()
        crops = []
        for g in groups:
            frame = frames[g.camera]
            crops.append(frame if g.box is None else frame[g.box[1] : g.box[3], g.box[0] : g.box[2]])
        batched = self.batch_views and len({g.camera for g in groups}) > 1
        t0 = time.perf_counter()
        encoded = self._encode(crops, batched) if batched else [None] * len(groups)
        encode_ms = (time.perf_counter() - t0) * 1000 / max(1, len(groups))
        for g, image in zip(groups, encoded, strict=True):
            t0 = time.perf_counter()
            checks = [recipe.checks[i] for i in g.members]
            try:
                if image is None:
                    frame = frames[g.camera]
                    view = frame if g.box is None else frame[g.box[1] : g.box[3], g.box[0] : g.box[2]]
                    image = self.model.encode(view, order="bgr")
                if isinstance(image, Exception):
                    raise image
                seen.append(
                    View(view_key(g.box, g.camera if g.camera != first else ""), tuple(g.members), image.pooled)
                )
                for k in ("preprocess_ms", "vision_ms"):
                    timings[k] += image.timings_ms.get(k, 0.0)
                timings["prefill_ms"] += image.timings_ms.get("image_prefill_ms", 0.0)
                qa = [(i, c) for i, c in zip(g.members, checks, strict=True) if isinstance(c, QACheck)]
                pointing = [(i, c) for i, c in zip(g.members, checks, strict=True) if not isinstance(c, QACheck)]
                answers = self.model.ask(
                    image,
                    [c.question for _, c in qa],
                    [c.prompt for _, c in pointing],
                    self.max_new_tokens,
                    max_points=[c.decode_cap() for _, c in pointing],
                )
            except Exception as err:  # a model failure makes these checks ERROR, never PASS
                for i in g.members:
                    failed = error_outcome(recipe.checks[i], f"model failed: {type(err).__name__}: {err}")
                    outcomes[i] = dataclasses.replace(failed, view=g.camera)
                continue
            timings["prefill_ms"] += answers.timings_ms["prefill_ms"]
            timings["decode_ms"] += answers.timings_ms["decode_ms"]
            timings["decode_tokens"] += answers.timings_ms["tokens"]
            ms = (time.perf_counter() - t0) * 1000 + (encode_ms if batched else 0.0)
            height, width = frames[g.camera].shape[:2]
            for (i, qa_check), answer in zip(qa, answers.yes_no, strict=True):
                judged = judge_qa(qa_check, answer.p_yes, answer.margin, ms=ms, mass=answer.mass)
                outcomes[i] = dataclasses.replace(judged, view=g.camera)
            for (i, point_check), result in zip(pointing, answers.pointing, strict=True):
                points = [(p.x, p.y) for p in result.answer.points]
                if g.box is not None:  # crop fractions → frame fractions
                    box = g.box
                    bw, bh = box[2] - box[0], box[3] - box[1]
                    points = [((box[0] + x * bw) / width, (box[1] + y * bh) / height) for x, y in points]
                judged = judge_points(point_check, points, result.answer.malformed, result.text, ms=ms)
                outcomes[i] = dataclasses.replace(judged, view=g.camera)
        for i, outcome in enumerate(outcomes):
            if outcome is None:  # the station never asks without every view's frame; a caller that does gets ERROR
                check = recipe.checks[i]
                missing = error_outcome(check, f"no frame of view {view_of(check, first)}")
                outcomes[i] = dataclasses.replace(missing, view=view_of(check, first))
        timings["inspect_ms"] = (time.perf_counter() - start) * 1000
        done = [o for o in outcomes if o is not None]
        errors = [o.reason for o in done if o.status == "error"]
        return Inspection(verdict(done), done, timings, "; ".join(errors), seen)
