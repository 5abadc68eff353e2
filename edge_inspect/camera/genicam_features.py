"""Finding the GenICam camera camera.genicam names, and setting its features, each checked against
the camera's own feature tree first: an unknown node, a value out of its range or not one of its entries is a
``FeatureError`` naming the camera, the feature and what it allows (one line; exit 2 at start).

Runs only in the camera's own thread (genicam.py): every Aravis call for one camera is made there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import GenICamSettings
from ..errors import UserError
from .live import CameraError

Value = int | float | bool | str
# Aravis' device list is one for the process: several GenICam cameras (cameras:, each in its own
# thread) look for their camera one at a time.
_DISCOVERY = threading.Lock()


class FeatureError(UserError):
    """The config asks the camera for a feature it does not have or a value it does not allow.
    ``key``: where in camera.genicam it was asked for (``("features", "GainRaw")``), when known."""

    key: tuple[str | int, ...] = ()


def describe(settings: GenICamSettings) -> str:
    """The camera as the config names it (for messages)."""
    for key in ("serial", "user_id", "address"):
        value = getattr(settings, key)
        if value is not None:
            return f"{key.replace('_', ' ')} {value}"
    return "(the only one found)"


def find_device(aravis: Any, settings: GenICamSettings) -> str:
    """The Aravis device id of the camera the config names. CameraError when it is not there (it may
    come: the camera is reconnected), UserError when several answer and none is named."""
    if settings.address is not None:
        return settings.address  # opened by address, no discovery needed (GigE Vision)
    with _DISCOVERY:
        return _discover(aravis, settings)


def _discover(aravis: Any, settings: GenICamSettings) -> str:
    aravis.update_device_list()
    ids = [aravis.get_device_id(i) for i in range(aravis.get_n_devices())]
    serials = [aravis.get_device_serial_nbr(i) for i in range(len(ids))]
    if settings.serial is not None:
        for device_id, serial in zip(ids, serials, strict=True):
            if serial == settings.serial:
                return device_id
        raise CameraError(f"no camera with serial {settings.serial} found (found: {', '.join(serials) or 'none'})")
    if settings.user_id is not None:
        for device_id in ids:
            camera = aravis.Camera.new(device_id)
            device = camera.get_device()
            names = [n for n in ("DeviceUserID", "GevDeviceUserID") if device.get_feature(n) is not None]
            found = device.get_string_feature_value(names[0]) if names else None
            del device, camera
            if found == settings.user_id:
                return device_id
        raise CameraError(f"no camera with user id {settings.user_id} found ({len(ids)} cameras answered)")
    if len(ids) > 1:
        raise UserError(
            f"camera.genicam: {len(ids)} cameras answered ({', '.join(serials)}); name one by serial, user_id or address"
        )
    if not ids:
        raise CameraError("no GigE Vision / USB3 Vision camera found")
    return ids[0]


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Features:
    """The feature tree of one open camera (an ArvCamera) as the config's checks need it."""

    def __init__(self, aravis: Any, camera: Any, name: str):
        self.aravis, self.camera, self.device, self.name = aravis, camera, camera.get_device(), name

    def refusal(self, feature: str, message: str) -> FeatureError:
        return FeatureError(f"camera {self.name}: feature {feature}: {message}")

    def node(self, feature: str) -> Any:
        node = self.device.get_feature(feature)
        if node is None:
            raise self.refusal(feature, "no such node in the camera's feature tree")
        return node

    def has(self, feature: str) -> bool:
        return self.device.get_feature(feature) is not None

    def entries(self, feature: str) -> list[str]:
        return list(self.device.dup_available_enumeration_feature_values_as_strings(feature) or [])

    def check(self, feature: str, value: Value) -> None:
        """Refuse ``value`` unless the node ``feature`` takes it (kind, entries, range, increment)."""
        gi = self.aravis
        node = self.node(feature)
        if not node.is_available():
            raise self.refusal(feature, "not available on this camera now")
        if isinstance(node, gi.GcCommand):
            raise self.refusal(feature, "is a command; commands are not set from the config")
        if isinstance(node, gi.GcEnumeration):
            allowed = self.entries(feature)
            if not isinstance(value, str) or value not in allowed:
                raise self.refusal(feature, f"{value!r} is not one of its values: {', '.join(allowed)}")
        elif isinstance(node, gi.GcBoolean):
            if not isinstance(value, bool):
                raise self.refusal(feature, f"{value!r} is not true or false")
        elif isinstance(node, gi.GcInteger):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.refusal(feature, f"{value!r} is not a whole number")
            low, high = self.device.get_integer_feature_bounds(feature)
            step = self.device.get_integer_feature_increment(feature) or 1
            if not low <= value <= high:
                raise self.refusal(feature, f"{value} is out of its range {low}..{high}")
            if (value - low) % step:
                raise self.refusal(feature, f"{value} is not {low} plus a multiple of {step}")
        elif isinstance(node, gi.GcFloat):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.refusal(feature, f"{value!r} is not a number")
            low, high = self.device.get_float_feature_bounds(feature)
            if not low <= value <= high:
                raise self.refusal(feature, f"{_number(value)} is out of its range {_number(low)}..{_number(high)}")
        elif isinstance(node, gi.GcString):
            if not isinstance(value, str):
                raise self.refusal(feature, f"{value!r} is not text")
        else:
            raise self.refusal(feature, f"a {type(node).__name__} node is not set from the config")

    def set(self, feature: str, value: Value) -> None:
        """Check ``value`` against the node, then write it."""
        from gi.repository import GLib

        self.check(feature, value)
        gi, device = self.aravis, self.device
        node = device.get_feature(feature)
        try:
            if isinstance(node, gi.GcEnumeration) or isinstance(node, gi.GcString):
                device.set_string_feature_value(feature, str(value))
            elif isinstance(node, gi.GcBoolean):
                device.set_boolean_feature_value(feature, bool(value))
            elif isinstance(node, gi.GcInteger):
                device.set_integer_feature_value(feature, int(value))
            else:
                device.set_float_feature_value(feature, float(value))
        except GLib.Error as err:
            raise self.refusal(feature, f"the camera refused {value!r}: {err.message}") from None

    def first(self, *features: str) -> str:
        """The first of ``features`` the camera has (ExposureTime or the older ExposureTimeAbs, ...)."""
        for feature in features:
            if self.has(feature):
                return feature
        raise self.refusal(features[0], f"no such node in the camera's feature tree (nor {', '.join(features[1:])})")


def configure(aravis: Any, camera: Any, name: str, settings: GenICamSettings) -> str:
    """Apply ``settings`` to an open camera, every value checked first; returns the pixel format
    the frames will have. Raises FeatureError."""
    f = Features(aravis, camera, name)
    if settings.pixel_format is not None:
        f.set("PixelFormat", settings.pixel_format)
    pixel_format = f.device.get_string_feature_value("PixelFormat")
    from .pixels import PFNC

    if pixel_format not in PFNC.values():
        raise f.refusal(
            "PixelFormat", f"{pixel_format} is the camera's; set pixel_format to one of {', '.join(PFNC.values())}"
        )
    geometry = [("Width", settings.width), ("Height", settings.height), ("OffsetX", settings.offset_x),
                ("OffsetY", settings.offset_y)]  # fmt: skip
    if any(value is not None for _, value in geometry):
        for offset in ("OffsetX", "OffsetY"):  # the width's range depends on the offset: start from 0
            if f.has(offset) and f.node(offset).is_available():
                f.set(offset, 0)
        for feature, value in geometry:
            if value is not None:
                f.set(feature, value)
    if settings.exposure_us is not None:
        if f.has("ExposureAuto") and "Off" in f.entries("ExposureAuto"):
            f.set("ExposureAuto", "Off")
        f.set(f.first("ExposureTime", "ExposureTimeAbs"), settings.exposure_us)
    if settings.gain is not None:
        if f.has("GainAuto") and "Off" in f.entries("GainAuto"):
            f.set("GainAuto", "Off")
        feature = f.first("Gain", "GainRaw")
        f.set(feature, int(settings.gain) if feature == "GainRaw" and settings.gain.is_integer() else settings.gain)
    if settings.frame_rate is not None:
        if f.has("AcquisitionFrameRateEnable"):
            f.set("AcquisitionFrameRateEnable", True)
        f.set(f.first("AcquisitionFrameRate", "AcquisitionFrameRateAbs"), settings.frame_rate)
    for name, setting in settings.features.items():
        f.set(name, setting)
    _trigger(f, settings)
    return pixel_format


def _trigger(f: Features, settings: GenICamSettings) -> None:
    """TriggerMode (of FrameStart) and TriggerSource for the chosen trigger."""
    if settings.trigger == "free_run" and not f.has("TriggerMode"):
        return
    if f.has("TriggerSelector") and "FrameStart" in f.entries("TriggerSelector"):
        f.set("TriggerSelector", "FrameStart")
    if settings.trigger == "free_run":
        f.set("TriggerMode", "Off")
        return
    f.set("TriggerSource", "Software" if settings.trigger == "software" else str(settings.trigger_source))
    f.set("TriggerMode", "On")
    if settings.trigger == "software":
        f.node("TriggerSoftware")


@contextmanager
def _at(*key: str) -> Iterator[None]:
    """A FeatureError raised inside names ``key`` (its place under camera.genicam)."""
    try:
        yield
    except FeatureError as err:
        err.key = key
        raise


def check_settings(aravis: Any, camera: Any, name: str, settings: GenICamSettings) -> None:
    """What ``configure`` would set, checked against an open camera without writing anything (the
    setup page's save, while the station streams). Raises FeatureError with its ``key``. Sizes are
    checked as if the offsets were 0 (configure sets them to 0 first); features that depend on a
    selector set before them are checked against the camera's present state."""
    f = Features(aravis, camera, name)
    if settings.pixel_format is not None:
        with _at("pixel_format"):
            f.check("PixelFormat", settings.pixel_format)
    for feature, offset, key in (("Width", "OffsetX", "width"), ("Height", "OffsetY", "height")):
        size = getattr(settings, key)
        if size is not None:
            with _at(key):
                _check_size(f, feature, offset, size)
    named = (
        ("exposure_us", ("ExposureTime", "ExposureTimeAbs"), settings.exposure_us),
        ("gain", ("Gain", "GainRaw"), settings.gain),
        ("frame_rate", ("AcquisitionFrameRate", "AcquisitionFrameRateAbs"), settings.frame_rate),
    )
    for key, features, value in named:
        if value is not None:
            with _at(key):
                feature = f.first(*features)
                f.check(feature, int(value) if feature == "GainRaw" and value.is_integer() else value)
    for feature, setting in settings.features.items():
        with _at("features", feature):
            f.check(feature, setting)
    if settings.trigger == "hardware":
        with _at("trigger_source"):
            f.check("TriggerSource", str(settings.trigger_source))
    elif settings.trigger == "software":
        with _at("trigger"):
            f.check("TriggerSource", "Software")
            f.node("TriggerSoftware")


def _check_size(f: Features, feature: str, offset: str, value: int) -> None:
    """``value`` within the node's range once the offset is 0 (its maximum grows by the offset)."""
    f.node(feature)
    low, high = f.device.get_integer_feature_bounds(feature)
    if f.has(offset):
        high += f.device.get_integer_feature_value(offset)
    if not low <= value <= high:
        raise f.refusal(feature, f"{value} is out of its range {low}..{high}")
