"""Setup pages for the integrator role (docs/setup.md): live view with the recipe's ROIs, the recipe
editor, try on the current frame or an uploaded image (nothing logged, PLC untouched), the Modbus
I/O monitor, and the station file's versions (save, diff, rollback, edits found on disk).

Everything here needs the ``setup`` permission; every change is audited."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import io
import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..camera.sources import CameraError
from ..config import ConfigError, Recipe, StationConfig
from ..config.editing import EditError, replace_recipes
from ..http.auth import User, allowed
from ..http.i18n import LABELS
from ..inspection.inspector import Inspection
from ..inspection.overlay import draw_overlay
from ..logbook import config_versions, review
from ..plc.handshake import Inputs
from ..station.config_keeper import ConflictError, SaveError, SaveResult
from .api import json_object
from .bodies import ConfigSaveBody, DiskBody, parse
from .context import BadRequest, Unauthorized, WebContext

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an image file, sent as it is (the binary form of try)
MAX_UPLOAD_BODY = MAX_UPLOAD_BYTES * 4 // 3 + 256 * 1024  # the JSON form: base64 of the largest upload, and the recipe
MAX_CONFIG_BODY = 2 * 1024 * 1024  # a station file (config/yaml_loader.py MAX_BYTES is 1 MiB) as JSON
DEFAULT_CAMERA_PIXELS = 12_000_000  # a 12 MP machine-vision camera, when the config names no size
FRAME_MAX_AGE_S = 0.5
TRY_MIN_INTERVAL_S = 1.0  # from the end of one try to the start of the next, while a PLC is connected


def max_upload_pixels(config: StationConfig) -> int:
    """web.max_upload_pixels, or 4 × the camera's resolution (4 × 12 MP when the config names none)."""
    if config.web.max_upload_pixels is not None:
        return config.web.max_upload_pixels
    camera = config.camera
    size = (camera.width or 0) * (camera.height or 0)
    return 4 * (size if size else DEFAULT_CAMERA_PIXELS)


class TooManyPixels(BadRequest):
    """An image that declares more pixels than the station takes."""


def check_image_size(raw: bytes | bytearray, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image's header, nothing decoded (Pillow reads headers lazily);
    BadRequest when it declares more than ``max_pixels`` or is no image."""
    from PIL import Image, UnidentifiedImageError

    too_many = f"more than this station takes ({max_pixels:,} pixels, web.max_upload_pixels)"
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own bound, far above ours
        raise TooManyPixels(f"image: declares {too_many}") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise BadRequest(f"image: not an image this station reads (PNG, JPEG, BMP, TIFF, WebP): {err}") from None
    if width * height > max_pixels:
        raise TooManyPixels(f"image: {width} × {height} pixels is {too_many}")
    return width, height


B64_SLICE = 1 << 20  # characters (a multiple of 4)


def _b64decode_in_slices(payload: str) -> bytes:
    """base64 of up to 27 MB, a slice at a time: one call would hold the GIL for tens of
    milliseconds, and the event loop that answers the PLC waits for it."""
    if len(payload) % 4:
        raise ValueError("base64 length is not a multiple of 4")
    return b"".join(
        base64.b64decode(payload[i : i + B64_SLICE], validate=True) for i in range(0, len(payload), B64_SLICE)
    )


def _decode_image(data: str, max_pixels: int) -> np.ndarray:
    """An uploaded image (a data: URL or bare base64) as a BGR frame; BadRequest naming the problem.
    Its size is read from the header first: over ``max_pixels`` it is refused before any decoding (a
    629-byte JPEG can declare 30000 × 30000 pixels, which would take gigabytes)."""
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(payload) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise BadRequest(f"image: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        raw = _b64decode_in_slices(payload)
    except (binascii.Error, ValueError):
        raise BadRequest("image: not base64 data") from None
    check_image_size(raw, max_pixels)
    return _decode_raw(raw)


HEADER_PEEK = 64 * 1024  # an image's first bytes, where its header (and its size) is


def peek_image_size(head: bytes, max_pixels: int) -> bool:
    """Checks an upload's first bytes while the rest is still arriving: BadRequest when their header
    declares more than ``max_pixels``; True when the size was read (and is allowed), False when these
    bytes do not tell (a header further in, or a format Pillow reads only whole)."""
    try:
        check_image_size(head, max_pixels)
    except TooManyPixels:
        raise
    except BadRequest:
        return False
    return True


def _decode_raw(raw: bytes | bytearray) -> np.ndarray:
    """An image file's bytes, already checked for size, as a BGR frame. OpenCV lets go of the GIL
    while it decodes: the loop that serves the PLC goes on meanwhile."""
    try:
        frame = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # e.g. a small file that declares 60000 × 60000 pixels
        raise BadRequest(f"image: OpenCV refuses it ({' '.join(str(err).split())[-120:]})") from None
    if frame is None:
        raise BadRequest("image: not an image OpenCV can read (PNG, JPEG, BMP, TIFF, WebP)")
    return frame


def _recipe(value: object) -> Recipe:
    """A recipe sent by the editor, checked by the config schema; BadRequest naming the key."""
    from pydantic import ValidationError

    try:
        return Recipe.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"] if p not in ("point", "count", "qa"))
        raise BadRequest(
            f"recipe.{loc}: {first['msg'].removeprefix('Value error, ')}" if loc else f"recipe: {first['msg']}"
        ) from None


def _jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


B64_ENCODE_SLICE = 3 << 18  # bytes (a multiple of 3): ~1 ms of base64 at a time


def _result(inspection: Inspection, frame: np.ndarray, recipe: Recipe) -> bytes:
    """The try's answer as JSON bytes, the overlay a JPEG data: URL. Built in a worker thread, and
    without one long hold of the GIL: the base64 of a large overlay (5 MB for a 6.6 MP image of
    noise) is made a slice at a time and put into the JSON as it is (base64 needs no escaping), where
    json.dumps of it would take 15 ms in one go — the Modbus server waits for the GIL meanwhile."""
    overlay = draw_overlay(frame, inspection.outcomes, inspection.verdict, [c.roi for c in recipe.checks])
    jpeg = _jpeg(overlay)
    head = json.dumps(
        {
            "verdict": inspection.verdict.name,
            "error": inspection.error,
            "checks": [dataclasses.asdict(o) for o in inspection.outcomes],
            "timings_ms": {k: round(v, 1) for k, v in inspection.timings_ms.items()},
            "frame_size": [frame.shape[1], frame.shape[0]],
        },
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    ).encode()
    pieces = [head[:-1], b',"overlay":"data:image/jpeg;base64,']
    pieces += [base64.b64encode(jpeg[i : i + B64_ENCODE_SLICE]) for i in range(0, len(jpeg), B64_ENCODE_SLICE)]
    return b"".join([*pieces, b'"}'])


UPLOAD_NICE = 10  # the try's decoding and drawing yield the CPU to the inspections and the loop


def _lower_priority() -> None:
    try:  # Linux: a thread's own nice value (its id is a task id)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UPLOAD_NICE)
    except (AttributeError, OSError):
        pass


def upload_executor() -> ThreadPoolExecutor:
    """The thread that decodes uploads, draws and encodes a try's answer and encodes the live view's
    JPEG: one (tries run one at a time), at a lower CPU priority than the inspection thread and the
    event loop."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="try", initializer=_lower_priority)


BINARY_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/tiff", "image/webp", "application/octet-stream")


def binary_upload(request: Request) -> bool:
    """The binary form of try: the image file itself is the body (the recipe in the query)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in BINARY_TYPES


def _query_recipe(request: Request) -> Recipe:
    text = request.query_params.get("recipe")
    if not text:
        raise BadRequest("recipe: send the recipe as JSON in the query (?recipe=…) with an image body")
    try:
        value = json.loads(text)  # at most the request head (16 KiB)
    except (ValueError, RecursionError):
        raise BadRequest("recipe: not valid JSON") from None
    return _recipe(value)


def value_meaning(name: str, value: object, t: dict[str, str]) -> str:
    """A result register's value in words, in the page's labels: error_code 2 → 'camera: no frame',
    verdict 2 → 'FAIL', failed_checks 5 → 'failed checks 1, 3' (numbered from 1, as on the HMI)."""
    if type(value) is not int:
        return ""
    if name == "error_code":
        return t.get(f"err_{value}", "")
    if name == "verdict":
        return {1: t["PASS"], 2: t["FAIL"], 3: t["ERROR"]}.get(value, "")
    if name == "failed_checks" and value:
        return f"{t['failed_checks_n']} " + ", ".join(str(i + 1) for i in range(16) if value >> i & 1)
    return ""


def io_values(ctx: WebContext, lang: str = "en") -> list[dict]:
    """Every signal of the effective map with its live value: outputs as the station last wrote
    them, inputs as last read from the PLC."""
    station = ctx.station
    inputs = station.last_inputs or Inputs()
    rows = []
    for s in station.signal_map.signals:
        value = station.handshake.outputs.get(s.name) if s.direction == "appliance_to_plc" \
            else getattr(inputs, s.name, None)  # fmt: skip
        rows.append(
            {
                "name": s.name,
                "table": s.table,
                "address": s.address,
                "count": s.count,
                "type": s.type,
                "direction": s.direction,
                "description": s.description,
                "value": int(value) if isinstance(value, bool) else value,
                "meaning": value_meaning(s.name, value, LABELS[lang]),
            }
        )
    return rows


def _saved(result: SaveResult) -> JSONResponse:
    return JSONResponse(
        {
            "version": result.version_id,
            "sha256": result.sha256,
            "applied": result.applied,
            "restart_needed": result.restart_needed,
        }
    )


class TryGate:
    """One *try* at a time and, while a PLC is connected, at least ``min_interval_s`` from the end of
    one to the start of the next. A try shares the model and the CPU with the PLC's inspections (it
    runs between them): an integrator clicking does not notice, uploads posted back to back cannot
    crowd out the line (benchmarks/upload_load.py: PLC cycle p50 1.12× instead of 1.84× with 4
    clients uploading maximum-size images, 1.01× with small ones; docs/performance-web.md)."""

    def __init__(self, min_interval_s: float = TRY_MIN_INTERVAL_S):
        self.min_interval_s, self.running, self.last = min_interval_s, False, float("-inf")

    def enter(self, line_running: bool = True) -> int:
        """0 and the gate is taken; else the seconds to wait."""
        now = time.monotonic()
        if self.running:
            return 1
        interval = self.min_interval_s if line_running else 0.0
        if now - self.last < interval:
            return max(1, math.ceil(interval - (now - self.last)))
        self.running, self.last = True, now
        return 0

    def leave(self) -> None:
        self.running = False
        self.last = time.monotonic()


@dataclasses.dataclass
class _FrameCache:
    """The live view's latest frame as JPEG, and when it was grabbed (monotonic seconds)."""

    at: float = 0.0
    jpeg: bytes | None = None


def routes(ctx: WebContext) -> list[Route]:
    frame_cache = _FrameCache()
    gate = TryGate()
    worker = upload_executor()

    async def off_loop(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    async def viewer(request: Request) -> User:
        """An integrator (session or HTTP Basic), for the pages and GETs (no CSRF: nothing changes)."""
        user = await ctx.user(request)
        if user is None:
            raise Unauthorized(401, "log in first")
        if not allowed(user, "setup"):
            raise Unauthorized(403, f"role '{user.role}' may not use the setup pages")
        return user

    def keeper():
        if ctx.station.keeper is None:
            raise BadRequest("this station was started without a config file; nothing to edit")
        return ctx.station.keeper

    async def page(request: Request, name: str, **extra) -> Response:
        await viewer(request)
        return ctx.page(request, name, has_file=ctx.station.keeper is not None, **extra)

    async def setup_page(request: Request) -> Response:
        return await page(request, "setup.html")

    async def io_page(request: Request) -> Response:
        return await page(request, "setup_io.html")

    async def config_page(request: Request) -> Response:
        return await page(request, "setup_config.html")

    async def frame(request: Request) -> Response:
        await viewer(request)
        now = time.monotonic()
        if frame_cache.jpeg is None or now - frame_cache.at > FRAME_MAX_AGE_S:
            try:
                image = await ctx.station.between_inspections(ctx.station.grab_frame)
            except CameraError as err:  # a lost camera: the page says so and keeps refreshing
                return JSONResponse({"error": f"camera: {err}"}, 503)
            jpeg = await off_loop(_jpeg, image)  # 12 MP: ~50 ms the loop that answers the PLC would wait
            frame_cache.jpeg, frame_cache.at = jpeg, time.monotonic()
        return Response(frame_cache.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def get_config(request: Request) -> Response:
        await viewer(request)
        k = ctx.station.keeper
        text, sha = await ctx.run(k.read) if k is not None else ("", None)
        recipes = [r.model_dump(mode="json", exclude_defaults=True) for r in ctx.config.recipes]
        return JSONResponse({
            "path": str(k.path) if k else None, "yaml": text, "sha256": sha, "running": ctx.station.config_sha256,
            "changed_on_disk": bool(k and k.disk_sha256), "restart_needed": k.restart_needed if k else [],
            "recipes": recipes, "recipe_active": ctx.station.status()["recipe_active"],
        })  # fmt: skip

    async def post_config(request: Request) -> Response:
        user = await ctx.require(request, "setup")
        given = parse(ConfigSaveBody, await json_object(request))
        k = keeper()
        base = given.base_sha256
        if given.recipes is not None:
            text, disk_sha = await ctx.run(k.read)
            if disk_sha != base:
                return JSONResponse({"error": f"{k.path} changed on disk since this page was loaded; reload"}, 409)
            try:  # YAML parsing off the loop that serves the PLC
                text = await ctx.run(replace_recipes, text, given.recipes)
            except EditError as err:
                raise BadRequest(f"{k.path}: {err}") from None
        elif given.yaml is not None:
            text = given.yaml
        else:
            raise BadRequest("send either yaml (the whole file) or recipes (a list)")
        comment = given.comment
        try:
            result = await k.save(text, user.name, "web", comment, base_sha256=base)
        except ConfigError as err:
            return JSONResponse(
                {"error": "the config has problems; nothing was saved", "problems": err.problems, "yaml": text}, 422
            )
        except ConflictError as err:
            return JSONResponse({"error": str(err)}, 409)
        except SaveError as err:
            return JSONResponse({"error": str(err)}, 500)
        return _saved(result)

    async def try_recipe(request: Request) -> Response:
        user = await ctx.require(request, "setup")
        wait = gate.enter(line_running=ctx.station.plc_status == "ok")  # before the body is read
        if wait:
            return JSONResponse(
                {"error": f"another try is running or has just run; try again in {wait} s"},
                429,
                headers={"Retry-After": str(wait), "Connection": "close"},  # the unread body is not read
            )
        try:
            return await _try(request, user)
        finally:
            gate.leave()

    async def receive_image(request: Request, size: int, max_pixels: int) -> bytearray:
        """The binary form's body, into one buffer of its announced ``size`` (nothing per piece but a
        copy); its header is checked as soon as its first HEADER_PEEK bytes are in, so an image that
        declares too many pixels is refused before the rest of it is read."""
        raw = bytearray(size)
        at, header = 0, "unread"  # → "allowed", or "whole" (the first bytes did not tell)
        with memoryview(raw) as view:
            async for piece in request.stream():
                end = at + len(piece)
                if end > size:
                    raise BadRequest("image: the body is longer than its Content-Length")
                view[at:end] = piece
                at = end
                if header == "unread" and at >= min(size, HEADER_PEEK):
                    first = bytes(view[:HEADER_PEEK])
                    header = "allowed" if await off_loop(peek_image_size, first, max_pixels) else "whole"
        if at < size:
            raise BadRequest("image: the body is shorter than its Content-Length")
        if header != "allowed":
            await off_loop(check_image_size, raw, max_pixels)
        return raw

    async def _try(request: Request, user: User) -> Response:
        max_pixels = max_upload_pixels(ctx.config)
        if binary_upload(request):
            length = request.headers.get("content-length", "")
            if not length.isdigit() or int(length) == 0:
                raise BadRequest("image: send the image file as the body, with a Content-Length")
            if int(length) > MAX_UPLOAD_BYTES:  # before a byte of it is read
                limit = f"larger than this endpoint takes ({MAX_UPLOAD_BYTES} bytes)"
                return JSONResponse({"error": f"image: {limit}"}, 413)
            recipe = _query_recipe(request)  # before the body: a wrong recipe costs no upload
            raw = await receive_image(request, int(length), max_pixels)
            image = await off_loop(_decode_raw, raw)
            del raw
        else:
            body = await json_object(request)
            recipe = _recipe(body.get("recipe"))
            upload = body.get("image")
            del body
            if upload is not None and not isinstance(upload, str):
                raise BadRequest("image: a data: URL or base64 text")
            image = await off_loop(_decode_image, upload, max_pixels) if upload else None
        station = ctx.station

        def run():  # in the inspection thread, between the PLC's inspections: the model and no more
            frame = image if image is not None else station.grab_frame()
            return station.inspector.run(frame, recipe), frame

        try:
            inspection, frame = await station.between_inspections(run)
        except CameraError as err:
            return JSONResponse({"error": f"camera: {err}"}, 503)
        body = await off_loop(_result, inspection, frame, recipe)
        await ctx.query(
            review.audit,
            user.name,
            "setup_try",
            {
                "recipe": recipe.number,
                "image": "upload" if image is not None else "camera",
                "verdict": inspection.verdict.name,
            },
        )
        return Response(body, media_type="application/json")

    async def io(request: Request) -> Response:
        await viewer(request)
        return JSONResponse({"plc": ctx.station.plc_status, "signals": io_values(ctx, ctx.lang(request))})

    async def versions(request: Request) -> Response:
        await viewer(request)
        k = ctx.station.keeper
        rows = await ctx.query(config_versions.history) if k is not None else []
        return JSONResponse({"running": ctx.station.config_sha256, "versions": rows})

    async def version(request: Request) -> Response:
        await viewer(request)
        version_id = request.path_params["id"]
        v = await ctx.query(config_versions.get, version_id)
        if v is None:
            return JSONResponse({"error": f"no config version {version_id}"}, 404)
        before = await ctx.query(config_versions.previous, version_id)
        diff = await ctx.run(
            config_versions.diff,
            before.yaml if before else "",
            v.yaml,
            f"version {before.id}" if before else "(none)",
            f"version {v.id}",
        )
        return JSONResponse({**dataclasses.asdict(v), "previous": before.id if before else None, "diff": diff})

    async def rollback(request: Request) -> Response:
        user = await ctx.require(request, "setup")
        try:
            result = await keeper().rollback(request.path_params["id"], user.name)
        except LookupError as err:
            return JSONResponse({"error": str(err)}, 404)
        except ConfigError as err:  # e.g. a bundle that is gone since
            return JSONResponse(
                {"error": "that version no longer validates; nothing was changed", "problems": err.problems}, 422
            )
        except ConflictError as err:
            return JSONResponse({"error": str(err)}, 409)
        except SaveError as err:
            return JSONResponse({"error": str(err)}, 500)
        return _saved(result)

    async def disk(request: Request) -> Response:
        user = await ctx.require(request, "setup")
        action = parse(DiskBody, await json_object(request)).action
        k = keeper()
        try:
            if action == "apply":
                result = await k.apply_disk(user.name)
            elif action == "discard":
                result = await k.discard_disk(user.name)
            else:
                raise BadRequest(
                    "action: 'apply' (take the file on disk) or 'discard' (write the running version back)"
                )
        except ConfigError as err:
            return JSONResponse(
                {"error": "the file on disk has problems; nothing was applied", "problems": err.problems}, 422
            )
        except (ConflictError, LookupError) as err:
            return JSONResponse({"error": str(err)}, 409)
        except SaveError as err:
            return JSONResponse({"error": str(err)}, 500)
        return _saved(result)

    return [
        Route("/setup", setup_page),
        Route("/setup/io", io_page),
        Route("/setup/config", config_page),
        Route("/api/setup/frame.jpg", frame),
        Route("/api/setup/config", get_config),
        Route("/api/setup/config", post_config, methods=["POST"]),
        Route("/api/setup/try", try_recipe, methods=["POST"]),
        Route("/api/setup/io", io),
        Route("/api/setup/versions", versions),
        Route("/api/setup/versions/{id:int}", version),
        Route("/api/setup/versions/{id:int}/rollback", rollback, methods=["POST"]),
        Route("/api/setup/disk", disk, methods=["POST"]),
    ]
