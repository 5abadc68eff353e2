"""Setup pages for the integrator role (docs/setup.md): live view with the recipe's ROIs, the recipe
editor, try on the current frame or an uploaded image (nothing logged, PLC untouched), the Modbus
I/O monitor, and the station file's versions (save, diff, rollback, edits found on disk).

Everything here needs the ``setup`` permission; every change is audited."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import time
from collections.abc import Awaitable

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
from ..station.config_keeper import ConfigKeeper, ConflictError, SaveError, SaveResult
from .api import json_object
from .bodies import ConfigSaveBody, DiskBody, parse
from .context import BadRequest, Unauthorized, WebContext, web_context

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # an image file, sent as it is (the binary form of try)
MAX_UPLOAD_BODY = MAX_UPLOAD_BYTES * 4 // 3 + 256 * 1024  # the JSON form: base64 of the largest upload, and the recipe
MAX_CONFIG_BODY = 2 * 1024 * 1024  # a station file (config/yaml_loader.py MAX_BYTES is 1 MiB) as JSON
DEFAULT_CAMERA_PIXELS = 12_000_000  # a 12 MP machine-vision camera, when the config names no size
FRAME_MAX_AGE_S = 0.5


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
# The try's overlay is drawn at most this many pixels on its long side: what a screen shows of it.
# A 6.6 MP upload is otherwise drawn, encoded and sent at full size (a 5 MB JPEG of noise), CPU the
# line's inspections wait for; its points are fractions of the frame, so they land the same.
OVERLAY_MAX_SIDE = 1600


def screen_sized(frame: np.ndarray) -> np.ndarray:
    """``frame`` scaled down (area-averaged) to fit OVERLAY_MAX_SIDE; as it is when it already does."""
    side = max(frame.shape[:2])
    if side <= OVERLAY_MAX_SIDE:
        return frame
    scale = OVERLAY_MAX_SIDE / side
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _result(inspection: Inspection, frame: np.ndarray, recipe: Recipe) -> bytes:
    """The try's answer as JSON bytes, the overlay a JPEG data: URL. Built in a worker thread, and
    without one long hold of the GIL: the base64 of a large overlay (5 MB for a 6.6 MP image of
    noise) is made a slice at a time and put into the JSON as it is (base64 needs no escaping), where
    json.dumps of it would take 15 ms in one go — the Modbus server waits for the GIL meanwhile."""
    overlay = draw_overlay(screen_sized(frame), inspection.outcomes, inspection.verdict, [c.roi for c in recipe.checks])
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


class KeeperRefused(Exception):
    """A save, rollback or disk action the config keeper refused; answered ``status`` with ``body``
    (the station web's exception handler)."""

    def __init__(self, status: int, body: dict):
        super().__init__(body.get("error", ""))
        self.status, self.body = status, body


async def _keep(action: Awaitable[SaveResult], problems: str, lookup: int | None = None, **extra) -> SaveResult:
    """The keeper's ``action`` awaited, its refusals as KeeperRefused: the config's problems 422 (the
    error ``problems``, and ``extra``), a conflict 409, a failed write 500, an unknown version
    ``lookup`` (when given; else it is a bug)."""
    try:
        return await action
    except ConfigError as err:
        raise KeeperRefused(422, {"error": problems, "problems": err.problems, **extra}) from None
    except ConflictError as err:
        raise KeeperRefused(409, {"error": str(err)}) from None
    except LookupError as err:
        if lookup is None:
            raise
        raise KeeperRefused(lookup, {"error": str(err)}) from None
    except SaveError as err:
        raise KeeperRefused(500, {"error": str(err)}) from None


async def viewer(request: Request) -> User:
    """An integrator (session or HTTP Basic), for the pages and GETs (no CSRF: nothing changes)."""
    user = await web_context(request).user(request)
    if user is None:
        raise Unauthorized(401, "log in first")
    if not allowed(user, "setup"):
        raise Unauthorized(403, f"role '{user.role}' may not use the setup pages")
    return user


def keeper(ctx: WebContext) -> ConfigKeeper:
    if ctx.station.keeper is None:
        raise BadRequest("this station was started without a config file; nothing to edit")
    return ctx.station.keeper


async def page(request: Request, name: str, **extra) -> Response:
    await viewer(request)
    ctx = web_context(request)
    return ctx.page(request, name, has_file=ctx.station.keeper is not None, **extra)


async def setup_page(request: Request) -> Response:
    return await page(request, "setup.html")


async def io_page(request: Request) -> Response:
    return await page(request, "setup_io.html")


async def models_page(request: Request) -> Response:
    return await page(request, "setup_models.html", shadow_defaults=web_context(request).config.model.shadow)


async def config_page(request: Request) -> Response:
    return await page(request, "setup_config.html")


async def frame(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    cache = ctx.setup.frame_cache
    now = time.monotonic()
    if cache.jpeg is None or now - cache.at > FRAME_MAX_AGE_S:
        try:
            image = await ctx.station.between_inspections(ctx.station.grab_frame)
        except CameraError as err:  # a lost camera: the page says so and keeps refreshing
            return JSONResponse({"error": f"camera: {err}"}, 503)
        jpeg = await ctx.setup.off_loop(_jpeg, image)  # 12 MP: ~50 ms the loop that answers the PLC would wait
        cache.jpeg, cache.at = jpeg, time.monotonic()
    return Response(cache.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def get_config(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    k = ctx.station.keeper
    text, sha = await ctx.run(k.read) if k is not None else ("", None)
    recipes = [r.model_dump(mode="json", exclude_defaults=True) for r in ctx.config.recipes]
    return JSONResponse({
        "path": str(k.path) if k else None, "yaml": text, "sha256": sha, "running": ctx.station.config_sha256,
        "changed_on_disk": bool(k and k.disk_sha256), "restart_needed": k.restart_needed if k else [],
        "recipes": recipes, "recipe_active": ctx.station.status()["recipe_active"],
    })  # fmt: skip


async def post_config(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    given = parse(ConfigSaveBody, await json_object(request))
    k = keeper(ctx)
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
    save = k.save(text, user.name, "web", given.comment, base_sha256=base)
    return _saved(await _keep(save, "the config has problems; nothing was saved", yaml=text))


async def try_recipe(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    gate = ctx.setup.gate
    wait = gate.enter(line_running=ctx.station.plc_status == "ok")  # before the body is read
    if wait:
        return JSONResponse(
            {"error": f"another try is running or has just run; try again in {wait} s"},
            429,
            headers={"Retry-After": str(wait), "Connection": "close"},  # the unread body is not read
        )
    try:
        return await _try(request, ctx, user)
    finally:
        gate.leave()


async def receive_image(request: Request, size: int, max_pixels: int) -> bytearray:
    """The binary form's body, into one buffer of its announced ``size`` (nothing per piece but a
    copy); its header is checked as soon as its first HEADER_PEEK bytes are in, so an image that
    declares too many pixels is refused before the rest of it is read."""
    off_loop = web_context(request).setup.off_loop
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


async def _try(request: Request, ctx: WebContext, user: User) -> Response:
    off_loop = ctx.setup.off_loop
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
    answer = await off_loop(_result, inspection, frame, recipe)
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
    return Response(answer, media_type="application/json")


async def io_signals(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    return JSONResponse({"plc": ctx.station.plc_status, "signals": io_values(ctx, ctx.lang(request))})


async def versions(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    k = ctx.station.keeper
    rows = await ctx.query(config_versions.history) if k is not None else []
    return JSONResponse({"running": ctx.station.config_sha256, "versions": rows})


async def version(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
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
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    undo = keeper(ctx).rollback(request.path_params["id"], user.name)
    # a version that no longer validates: e.g. a bundle that is gone since
    return _saved(await _keep(undo, "that version no longer validates; nothing was changed", lookup=404))


async def disk(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    action = parse(DiskBody, await json_object(request)).action
    k = keeper(ctx)
    if action == "apply":
        take = k.apply_disk(user.name)
    elif action == "discard":
        take = k.discard_disk(user.name)
    else:
        raise BadRequest("action: 'apply' (take the file on disk) or 'discard' (write the running version back)")
    return _saved(await _keep(take, "the file on disk has problems; nothing was applied", lookup=409))


def routes() -> list[Route]:
    return [
        Route("/setup", setup_page),
        Route("/setup/io", io_page),
        Route("/setup/config", config_page),
        Route("/setup/models", models_page),
        Route("/api/setup/frame.jpg", frame),
        Route("/api/setup/config", get_config),
        Route("/api/setup/config", post_config, methods=["POST"]),
        Route("/api/setup/try", try_recipe, methods=["POST"]),
        Route("/api/setup/io", io_signals),
        Route("/api/setup/versions", versions),
        Route("/api/setup/versions/{id:int}", version),
        Route("/api/setup/versions/{id:int}/rollback", rollback, methods=["POST"]),
        Route("/api/setup/disk", disk, methods=["POST"]),
    ]
