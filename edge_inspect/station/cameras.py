"""The station's cameras (``camera:``, or several named under ``cameras:``, docs/cameras.md): each
with its own grabber and its own frame-age and trigger rules (camera/), undistorted when it is
calibrated; for one part, every camera its recipe's checks look at is grabbed at once, each in a
thread of its own, so a software-triggered GenICam camera gets its TriggerSoftware while the others
take their frames.

A view that has no frame by its own rules (lost, no frame within its age limit, a trigger with no
frame of its own) makes the part ERROR naming that camera: never an older frame, never a part
judged on some of its views.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from ..camera.calibration import CameraCalibration, Undistorter
from ..camera.genicam_features import FeatureError
from ..camera.live import LiveCamera
from ..camera.sources import Camera, CameraError, make_camera
from ..config import NamedCamera, Recipe, StationConfig
from ..inspection.inspector import view_of

if TYPE_CHECKING:
    from ..camera.genicam import GenICamCamera

AnyCamera = Union[Camera, LiveCamera, "GenICamCamera"]  # noqa: UP007 - a forward reference
StatusCallback = Callable[[str, str, str], None]  # camera name, status (ok | lost | closed), detail


@dataclass
class StationCamera:
    """One camera of the station: its name, settings, the camera itself and its undistorter."""

    name: str
    config: NamedCamera
    camera: AnyCamera
    undistort: Undistorter | None

    def grab(self, trigger_at: float | None = None) -> np.ndarray:
        """A frame by this camera's rules, undistorted when calibrated (CameraError when none)."""
        frame = self.camera.grab(trigger_at)
        return self.undistort(frame) if self.undistort is not None else frame


@dataclass(frozen=True)
class Shot:
    """One camera's frame of a part, or why there is none (``error``)."""

    camera: str
    frame: np.ndarray | None
    error: str = ""
    frame_id: int | None = None  # a GenICam camera's id of the frame and its timestamp (its own clock)
    camera_ts_ns: int | None = None
    grab_ms: float = 0.0


class StationCameras:
    """The cameras by name, in the config's order (the first is the one a check naming no view looks at)."""

    def __init__(self, config: StationConfig, base_dir: Path, on_status: StatusCallback):
        self.cameras: dict[str, StationCamera] = {}
        for named in config.camera_list():
            undistort = None
            if named.calibration:
                path = Path(named.calibration)
                undistort = Undistorter(CameraCalibration.load(path if path.is_absolute() else base_dir / path))

            def status(state: str, detail: str, name: str = named.name) -> None:
                on_status(name, state, detail)

            camera = make_camera(named, base_dir, on_status=status)
            self.cameras[named.name] = StationCamera(named.name, named, camera, undistort)
        self.first = next(iter(self.cameras.values()))
        # one thread per camera, so that the views of a part are taken together (none with one camera)
        many = len(self.cameras) > 1
        self._pool = ThreadPoolExecutor(len(self.cameras), thread_name_prefix="grab") if many else None

    @property
    def names(self) -> list[str]:
        return list(self.cameras)

    def __iter__(self):
        return iter(self.cameras.values())

    def needed(self, recipe: Recipe) -> list[str]:
        """The cameras ``recipe``'s checks look at, in the station's order, and any it names that this
        station does not run (a recipe saved live naming a camera added to the file: it waits for a
        restart) after them."""
        named = {view_of(c, self.first.name) for c in recipe.checks}
        return [n for n in self.cameras if n in named] + sorted(named - set(self.cameras))

    def needed_by_any(self, recipes: list[Recipe]) -> set[str]:
        """The cameras some recipe looks at: one of them lost drops `ready`."""
        return {n for r in recipes for n in self.needed(r)}

    def _shot(self, name: str, trigger_at: float | None) -> Shot:
        t0 = time.perf_counter()
        cam = self.cameras.get(name)
        if cam is None:
            return Shot(name, None, "not running: a camera added to station.yaml starts with the next start")
        try:
            frame = cam.grab(trigger_at)
        except CameraError as err:
            return Shot(name, None, str(err), grab_ms=(time.perf_counter() - t0) * 1000)
        taken = getattr(cam.camera, "last_frame", None)  # GenICam: id and timestamp; synthetic: the seed
        return Shot(
            name, frame, "", taken.frame_id if taken is not None else None,
            taken.camera_ts_ns if taken is not None else None, (time.perf_counter() - t0) * 1000,
        )  # fmt: skip

    def grab(self, names: list[str], trigger_at: float | None = None) -> list[Shot]:
        """A frame of each camera ``names`` says, taken together (a thread per camera), in that order.
        Worker threads only; each camera waits by its own rules (stall_timeout_s, max_frame_age_ms)."""
        if len(names) == 1 or self._pool is None:
            return [self._shot(name, trigger_at) for name in names]
        futures = [self._pool.submit(self._shot, name, trigger_at) for name in names]
        return [f.result() for f in futures]

    def start(self) -> None:
        """A live camera's grabber starts streaming; a GenICam camera is opened and configured."""
        for cam in self:
            cam.camera.start()

    def close(self) -> None:
        for cam in self:
            cam.camera.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def lost_message(self, lost: dict[str, str]) -> str:
        """The camera_lost alarm's message: the camera's own words, each naming its camera when several."""
        if len(self.cameras) == 1:
            return next(iter(lost.values()))
        return "; ".join(f"camera {name}: {detail}" for name, detail in sorted(lost.items()))

    def check(self, new: StationConfig) -> None:
        """New GenICam settings for the cameras running under the same names, checked against their
        feature trees without writing (blocking): FeatureError whose key is the whole path
        (``camera.genicam.…`` or ``cameras.1.genicam.…``). Nothing to check for other sources, another
        camera, or a camera not connected now (the start checks them)."""
        section: tuple[str | int, ...]
        for i, named in enumerate(new.camera_list()):
            running = self.cameras.get(named.name)
            check = getattr(running.camera, "check_settings", None) if running is not None else None
            if named.source != "genicam" or check is None:
                continue
            section = ("cameras", i) if new.cameras is not None else ("camera",)
            try:
                check(named.genicam)
            except FeatureError as err:
                err.key = (*section, "genicam", *err.key)
                raise

    def due_for_probe(self, now: float) -> list[StationCamera]:
        """Cameras to check while idle: lost ones, and those without a frame for a second."""
        return [
            cam for cam in self
            if cam.camera.can_fail and (cam.camera.status == "lost" or now - cam.camera.last_frame_at >= 1.0)
        ]  # fmt: skip

    def status(self) -> dict[str, dict]:
        """Each camera's status, its detail when lost, and a GenICam camera's counters."""
        return {
            cam.name: {
                "status": cam.camera.status,
                "detail": getattr(cam.camera, "detail", ""),
                "source": cam.config.source,
                "counters": getattr(cam.camera, "counters", dict)(),
            }
            for cam in self
        }
