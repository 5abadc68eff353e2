"""One part, from its cameras to its judged inspection (the station's worker thread): the views its
recipe's checks look at are grabbed together (station/cameras.py), each check runs on its view's
frame, and the unfamiliar-frame guard judges what the model saw. One verdict per part: a view with
no frame makes the whole part ERROR (error code 2) naming the camera, never a part judged on the
views that did come."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import Recipe
from ..inspection.inspector import Inspection, Inspector, View
from ..logbook import ViewRecord
from ..verdict import ErrorCode, Verdict
from .cameras import Shot, StationCameras
from .unfamiliar import Guard, Judgement


@dataclass
class Part:
    """What the station logs of one part: the inspection, the guard's judgement, the error code for the
    PLC, and the frames of its views in the station's order (the first is the one the log's row and
    the HMI show)."""

    inspection: Inspection
    judged: Judgement | None
    code: ErrorCode
    shots: list[Shot] = field(default_factory=list)

    @property
    def frame(self) -> np.ndarray | None:
        """The first view's frame (None when the part has no frame: a camera failed, no recipe)."""
        return self.shots[0].frame if self.shots and self.code != ErrorCode.CAMERA else None

    def frames(self) -> dict[str, np.ndarray]:
        """Every view's frame by camera, when all came (the log keeps the others beside the first)."""
        if self.code == ErrorCode.CAMERA:
            return {}
        return {s.camera: s.frame for s in self.shots if s.frame is not None}

    def view_records(self, cameras: StationCameras) -> tuple[ViewRecord, ...]:
        """The log's rows of a part seen by several cameras (none for one camera: its row says it all)."""
        if len(self.shots) < 2:
            return ()
        out = []
        for shot in self.shots:
            cam = cameras.cameras.get(shot.camera)
            frame = shot.frame if self.code != ErrorCode.CAMERA else None
            out.append(
                ViewRecord(
                    view=shot.camera,
                    frame_size=(frame.shape[1], frame.shape[0]) if frame is not None else None,
                    mm_per_px=cam.undistort.calibration.mm_per_px if cam and cam.undistort else None,
                    frame_id=shot.frame_id,
                    camera_ts_ns=shot.camera_ts_ns,
                    error=shot.error,
                    grab_ms=shot.grab_ms,
                )
            )
        return tuple(out)


def _one_view(inspection: Inspection, camera: str, first: str) -> Inspection:
    """An inspection of one frame (Inspector.run) as the view ``camera``: its outcomes name it, and the
    guard's keys name a camera other than the first (whose references are the first camera's)."""
    inspection.outcomes = [dataclasses.replace(o, view=camera) for o in inspection.outcomes]
    if camera != first:
        inspection.views = [View(f"{camera}:{v.key}", v.members, v.pooled) for v in inspection.views]
    return inspection


def grab_and_inspect(
    cameras: StationCameras,
    inspector: Inspector,
    guard: Guard,
    recipe: Recipe,
    recipes: list[Recipe],
    version: str,
    trigger_at: float,
    timings: dict[str, float],
) -> Part:
    """Grab the part's views, run its checks, let the guard judge; fills ``timings`` (grab_ms and the
    inspector's). Worker thread only; never raises for camera or model trouble."""
    t0 = time.perf_counter()
    shots = cameras.grab(cameras.needed(recipe), trigger_at)
    timings["grab_ms"] = (time.perf_counter() - t0) * 1000
    failed = [s for s in shots if s.frame is None]
    if failed:
        several = len(cameras.names) > 1
        error = "; ".join(f"camera {s.camera}: {s.error}" if several else f"camera: {s.error}" for s in failed)
        return Part(Inspection(Verdict.ERROR, [], error=error), None, ErrorCode.CAMERA, shots)
    first = cameras.first.name
    frames = {s.camera: s.frame for s in shots if s.frame is not None}
    if len(frames) == 1:  # one camera looks at this part: the frame's own inspection (as `try` runs it)
        ((camera, frame),) = frames.items()
        inspection = _one_view(inspector.run(frame, recipe), camera, first)
    else:
        inspection = inspector.run_part(frames, recipe, first)
    inspection, judged = guard.judge(recipe, inspection, version, recipes)
    timings.update(inspection.timings_ms)
    return Part(inspection, judged, ErrorCode.MODEL if inspection.verdict == Verdict.ERROR else ErrorCode.NONE, shots)
