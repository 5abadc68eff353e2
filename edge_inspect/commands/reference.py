"""``edge-inspect model reference``: the unfamiliar-frame guard's reference of each recipe for one
model version, from commissioning frames (docs/model-lifecycle.md, "The unfamiliar-frame guard").

The frames come from the station's camera (``--frames N``: run it while the station is stopped, or the
camera is busy), from a folder of images (``--folder``), or from the frames kept by the last run
(``--kept``: the reference of another version, a candidate before its promote, from the same
frames). The model is the station's (``model.bundle``) unless ``--model`` names a version or alias of
the model store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_FRAMES = 200
STEADY_FRAMES = 100  # fewer: the threshold rests on a few held-out scores per fold, and moves with the draw


def _warn(message: str) -> None:
    print(f"edge-inspect: warning: {message}", file=sys.stderr)


def _grab(config, base_dir: Path, count: int) -> list[np.ndarray]:
    from ..camera.calibration import CameraCalibration, Undistorter
    from ..camera.sources import CameraError, make_camera

    undistort = None
    if config.camera.calibration:
        path = Path(config.camera.calibration)
        undistort = Undistorter(CameraCalibration.load(path if path.is_absolute() else base_dir / path))
    camera = make_camera(config.camera, base_dir)
    frames = []
    try:
        camera.start()
        for _ in range(count):
            frame = camera.grab(time.monotonic())
            frames.append(undistort(frame) if undistort is not None else frame)
    except CameraError as err:
        raise UserError(f"camera: {err} (is the station running? stop it, or use --folder)") from None
    finally:
        camera.close()
    return frames


def _model(config, name: str | None, data_dir: Path):
    if name is None:
        return config.model.load()
    from ..modelstore import ModelStore, ModelStoreError

    store = ModelStore.of_storage(data_dir, config.storage.models_max_mb)
    try:
        path = store.find(name).path
    except ModelStoreError as err:
        raise UserError(f"--model {name}: {err}") from None
    return config.model.model_copy(update={"bundle": str(path)}).load()


def cmd_reference(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..inspection.familiarity import MIN_FRAMES
    from ..station import references
    from ..station.running import station_running

    config, _ = load_config(args.config)
    base_dir = Path(args.config).parent
    data_dir = Path(config.storage.dir) if Path(config.storage.dir).is_absolute() else base_dir / config.storage.dir
    if args.recipe is not None and config.recipe(args.recipe) is None:
        raise UserError(f"--recipe {args.recipe}: no such recipe in {args.config}")
    if station_running(data_dir):
        _warn(
            f"a station is running on {data_dir}: grabbing competes with it for its camera (stop it, or use "
            "--folder or --kept)"
            if not (args.kept or args.folder)
            else f"a station is running on {data_dir}: the reference is built beside the line, on the same CPU, "
            "and judges its parts from the next one"
        )
    if args.kept:
        frames, source = references.read_frames(references.frames_folder(data_dir)), "kept commissioning frames"
    elif args.folder:
        frames, source = references.read_frames(Path(args.folder), args.frames), f"folder {args.folder}"
    else:
        frames, source = _grab(config, base_dir, args.frames or DEFAULT_FRAMES), f"camera {config.camera.source}"
    if MIN_FRAMES <= len(frames) < STEADY_FRAMES:  # fewer than MIN_FRAMES: refused below
        _warn(
            f"{len(frames)} frames: a reference from fewer than {STEADY_FRAMES} gives an unsteady threshold (more "
            f"false alarms, or misses); {DEFAULT_FRAMES} or more are advised"
        )
    model = _model(config, args.model, data_dir)
    recipes = [r for r in config.recipes if args.recipe is None or r.number == args.recipe]
    start = time.perf_counter()
    built = references.build(model, frames, recipes, data_dir, source, args.quantile)
    seconds = time.perf_counter() - start
    if not args.kept:
        references.keep_frames(data_dir, frames)
    for _path, ref in built:
        for key, view in ref.views.items():
            print(
                f"recipe {ref.meta['recipe']} ({ref.meta['recipe_name']}), {key}: threshold {view.threshold:.1f} "
                f"(held-out scores: median {view.holdout[0]:.1f}, p99 {view.holdout[1]:.1f}, max {view.holdout[2]:.1f})"
            )
    print(
        f"reference of model {model.sha256[:12]} from {len(frames)} frames ({source}) in {seconds:.1f} s: "
        f"{references.reference_path(data_dir, model.sha256, 0).parent}"
    )
    return 0


def add_parser(model: argparse._SubParsersAction) -> None:
    """``reference`` under ``edge-inspect model``."""
    ref = model.add_parser("reference", help="the unfamiliar-frame guard's reference from commissioning frames")
    ref.add_argument("--config", required=True, help="the station.yaml (camera, recipes, model, storage.dir)")
    frames = ref.add_mutually_exclusive_group()
    frames.add_argument("--folder", help="read the frames from this folder of images instead of the camera")
    frames.add_argument("--kept", action="store_true", help="the frames kept by the last reference run")
    ref.add_argument(
        "--frames",
        type=_count,
        default=None,
        help=f"frames to grab (default {DEFAULT_FRAMES}); with --folder: at most this many",
    )
    ref.add_argument("--model", help="a model store version or alias; none: the station's model.bundle")
    ref.add_argument("--recipe", type=int, help="only this recipe; none: every recipe")
    ref.add_argument(
        "--quantile", type=_quantile, default=0.999, help="the threshold's quantile of the held-out scores"
    )
    ref.set_defaults(func=cmd_reference)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{value}: between 1 and 100000")
    return value


def _quantile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.5 < value < 1:
        raise argparse.ArgumentTypeError(f"{value}: between 0.5 and 1 (e.g. 0.999)")
    return value
