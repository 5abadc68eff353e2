"""What the log keeps of one inspection (store.py writes it): the record, and a row per view of a part
seen by several cameras (docs/log.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..inspection.checks import CheckOutcome
from ..verdict import Verdict


@dataclass(frozen=True)
class ViewRecord:
    """One camera's view of a part seen by several cameras (the ``inspection_views`` table)."""

    view: str  # the camera's name
    frame_size: tuple[int, int] | None = None  # width, height of its (undistorted) frame; None: no frame
    mm_per_px: float | None = None  # its calibration: its checks' points are also logged in mm
    frame_id: int | None = None  # a GenICam camera's id of the frame and its timestamp
    camera_ts_ns: int | None = None
    error: str = ""  # why it had no frame
    grab_ms: float = 0.0


@dataclass(frozen=True)
class InspectionRecord:
    result_id: int
    station: str
    recipe: int
    recipe_name: str
    part_id: str
    trigger: str  # plc | interval | software
    verdict: Verdict
    error: str
    outcomes: list[CheckOutcome]
    timings_ms: dict[str, float]
    model_sha256: str
    config_sha256: str
    rois: list[list[tuple[float, float]] | None]
    mm_per_px: float | None = None  # a calibrated camera: points are also logged in mm
    frame_size: tuple[int, int] | None = None  # width, height of the (undistorted) frame
    recipe_sha256: str = ""  # the version of the recipe it ran (Recipe.sha256)
    review_reason: str = ""  # why review sampling chose it for the QA queue ("": it did not)
    frame_id: int | None = None  # a GenICam camera's id of the frame inspected; the synthetic camera's seed
    camera_ts_ns: int | None = None  # and its timestamp on the camera's clock
    unfamiliar_score: float | None = None  # the unfamiliar-frame guard's score (None: no reference)
    unfamiliar_threshold: float | None = None  # and the threshold it was judged against
    views: tuple[ViewRecord, ...] = ()  # a part seen by several cameras: each view, the first first

    def checks_on(self, view: str) -> set[int]:
        """The indices of the checks that looked at ``view``."""
        return {i for i, o in enumerate(self.outcomes) if o.view == view}

    def view_image_name(self, view: str) -> str:
        """The suffix of a view's image beside the first view's: ``_<camera>`` (none for the first)."""
        return "" if not self.views or view == self.views[0].view else f"_{view}"

    @property
    def unfamiliar(self) -> bool:
        """The unfamiliar-frame guard flagged the frame (a view past its reference's threshold)."""
        return (
            self.unfamiliar_score is not None
            and self.unfamiliar_threshold is not None
            and (self.unfamiliar_score > self.unfamiliar_threshold)
        )


def mm_scales(rec: InspectionRecord) -> dict[str, tuple[float, float]]:
    """Fractions to mm per view (``""``: the record's own frame, a part seen by one camera)."""
    scales = {}
    if rec.mm_per_px and rec.frame_size and not rec.views:
        scales[""] = (rec.frame_size[0] * rec.mm_per_px, rec.frame_size[1] * rec.mm_per_px)
    for view in rec.views:  # several cameras: each view's points by its own calibration, or none
        if view.mm_per_px and view.frame_size:
            scales[view.view] = (view.frame_size[0] * view.mm_per_px, view.frame_size[1] * view.mm_per_px)
    return scales
