"""The station's parts: camera, model, PLC link, triggers, storage."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ..plc.settings import LinkSettings
from ..plc.signals import MAX_DEFECT_POSITIONS, MapError, SignalMap, build_map
from .base import FieldError, Strict, base_dir, check_host, in_base
from .calibration_file import CalibrationError, CameraCalibration
from .gate import GateConfig

if TYPE_CHECKING:
    from ..vlm import VisionLanguageModel


# The generator's defect kinds (edge_inspect.sim.ALL_DEFECT_KINDS; config may not import sim)
DefectKind = Literal["scratch", "spot", "dent", "crack", "chip"]


class SyntheticCamera(Strict):
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    width: int = Field(default=320, ge=64, le=4096)
    height: int = Field(default=240, ge=64, le=4096)
    defect_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="share of defective parts; unset: the generator's own mix (~85 %)"
    )
    defect_kinds: list[DefectKind] | None = Field(
        default=None,
        min_length=1,
        description=(
            "the kinds a part's surface defects are drawn from; unset: scratch, spot and dent. crack and chip are "
            "kinds the demo student never saw (a line that starts producing a new defect)"
        ),
    )


PIXEL_FORMATS = ("Mono8", "Mono16", "BayerRG8", "BayerGB8", "BayerGR8", "BayerBG8", "RGB8", "BGR8")
PixelFormat = Literal["Mono8", "Mono16", "BayerRG8", "BayerGB8", "BayerGR8", "BayerBG8", "RGB8", "BGR8"]
_NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Set by the named keys of camera.genicam (and the trigger mode): not also under features.
NAMED_NODES = {
    "PixelFormat": "pixel_format", "Width": "width", "Height": "height", "OffsetX": "offset_x",
    "OffsetY": "offset_y", "AcquisitionFrameRate": "frame_rate", "TriggerMode": "trigger",
    "TriggerSource": "trigger_source", "TriggerSelector": "trigger", "TriggerSoftware": "trigger",
}  # fmt: skip


class GenICamSettings(Strict):
    """A GigE Vision / USB3 Vision camera through Aravis (docs/cameras.md): which one, its features
    (checked against the camera's own feature tree at start) and its trigger."""

    serial: str | None = Field(default=None, min_length=1, max_length=256, description="the camera's serial number")
    user_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="DeviceUserID set on the camera"
    )
    address: str | None = Field(default=None, description="a GigE camera's IP address")
    pixel_format: PixelFormat | None = Field(default=None, description="unset: the camera's own (one of these)")
    exposure_us: float | None = Field(default=None, gt=0, le=1e8, description="ExposureTime (or ExposureTimeAbs)")
    gain: float | None = Field(default=None, ge=-100, le=1000, description="Gain (or GainRaw)")
    width: int | None = Field(default=None, ge=1, le=65535)
    height: int | None = Field(default=None, ge=1, le=65535)
    offset_x: int | None = Field(default=None, ge=0, le=65535)
    offset_y: int | None = Field(default=None, ge=0, le=65535)
    frame_rate: float | None = Field(default=None, gt=0, le=100000, description="AcquisitionFrameRate (free-run)")
    trigger: Literal["free_run", "software", "hardware"] = Field(
        default="free_run",
        description="free_run: the newest frame; software: TriggerSoftware on the PLC's trigger; hardware: a line",
    )
    trigger_source: str | None = Field(default=None, description="hardware trigger: the camera's line (Line0, ...)")
    features: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="any other GenICam feature by its node name"
    )
    buffers: int = Field(default=8, ge=2, le=256, description="stream buffers")
    packet_resend: bool = Field(
        default=True,
        description="GigE Vision: ask the camera again for lost packets (frames still missing any are not inspected)",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IPv4 address") from None
        return value

    @field_validator("trigger_source")
    @classmethod
    def _source_name(cls, value: str | None) -> str | None:
        if value is not None and not _NODE_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a trigger source name (Line0, Line1, ...)")
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, features: dict[str, int | float | bool | str]) -> dict[str, int | float | bool | str]:
        for name, value in features.items():
            if not _NODE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a GenICam node name")
            if name in NAMED_NODES:
                raise ValueError(f"{name} is set by camera.genicam.{NAMED_NODES[name]}, not under features")
            if isinstance(value, str) and len(value) > 256:
                raise ValueError(f"{name}: a value is at most 256 characters")
        return features

    @model_validator(mode="after")
    def _consistent(self):
        chosen = [k for k in ("serial", "user_id", "address") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise FieldError(f"name the camera one way: {' and '.join(chosen)} are both given", (chosen[1],))
        if self.trigger == "hardware" and self.trigger_source is None:
            raise FieldError("trigger 'hardware' needs trigger_source (the camera's line: Line0, ...)", ("trigger",))
        if self.trigger != "hardware" and self.trigger_source is not None:
            raise FieldError(f"trigger_source is for trigger 'hardware', not '{self.trigger}'", ("trigger_source",))
        return self


class CameraConfig(Strict):
    source: Literal["synthetic", "device", "url", "gstreamer", "file", "folder", "genicam"] = "synthetic"
    device: int | str | None = Field(default=None, description="an index (0) or a device path (/dev/video0)")
    url: str | None = Field(default=None, max_length=4096)
    pipeline: str | None = Field(default=None, max_length=4096)
    path: str | None = Field(default=None, max_length=4096)
    width: int | None = Field(default=None, ge=16, le=16384)
    height: int | None = Field(default=None, ge=16, le=16384)
    fps: float | None = Field(default=None, gt=0, le=1000)
    loop: bool = True
    stall_timeout_s: float = Field(default=1.5, gt=0, le=3600)
    reconnect_min_s: float = Field(default=0.2, gt=0, le=3600)
    reconnect_max_s: float = Field(default=10.0, gt=0, le=3600)
    max_frame_age_ms: float = Field(
        default=500.0, gt=0, le=3_600_000, description="live sources: an older frame is never inspected"
    )
    frames_after_trigger: int = Field(
        default=2,
        ge=1,
        le=10,
        description=(
            "live sources: inspect the n-th frame that arrives after the trigger (the first may have been sent before it)"
        ),
    )
    synthetic: SyntheticCamera = SyntheticCamera()
    genicam: GenICamSettings = GenICamSettings()
    calibration: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "camera calibration JSON from `edge-inspect calibrate camera` (relative to this file): frames are "
            "undistorted and points are also logged in millimetres on the working plane"
        ),
    )

    @field_validator("device")
    @classmethod
    def _device(cls, device: int | str | None) -> int | str | None:
        if isinstance(device, int) and not 0 <= device <= 255:
            raise ValueError(f"device index {device} is out of range (0..255)")
        if isinstance(device, str) and len(device) > 4096:
            raise ValueError("a device path is at most 4096 characters")
        return device

    @model_validator(mode="after")
    def _source_fields(self, info: ValidationInfo):
        needed = {"device": "device", "url": "url", "gstreamer": "pipeline", "file": "path", "folder": "path"}
        key = needed.get(self.source)
        if key and getattr(self, key) in (None, ""):
            raise ValueError(f"camera source '{self.source}' needs '{key}'")
        if self.source == "genicam":
            for key in ("width", "height", "fps"):
                if getattr(self, key) is not None:
                    better = "frame_rate" if key == "fps" else key
                    raise FieldError(f"a genicam camera takes camera.genicam.{better}, not camera.{key}", (key,))
        if self.reconnect_min_s > self.reconnect_max_s:
            raise FieldError(
                f"reconnect_min_s ({self.reconnect_min_s}) is greater than reconnect_max_s ({self.reconnect_max_s})",
                ("reconnect_min_s",),
                ("reconnect_max_s",),
            )
        base = base_dir(info)
        if base is not None:  # while loading a file: what the source names must exist on this machine
            self._source_exists(base)
        return self

    def _source_exists(self, base: Path) -> None:
        device = self.device if self.source == "device" and isinstance(self.device, str) else None
        if device is not None and not (device.isascii() and device.isdigit()):
            if not device.startswith("/"):
                raise FieldError(f"{device!r} is neither an index (0) nor a device path (/dev/video0)", ("device",))
            if not in_base(device, base).exists():
                raise FieldError(f"no such device {device}", ("device",))
        elif device is not None and (len(device) > 3 or int(device) > 255):
            raise FieldError(f"device index {device} is out of range (0..255)", ("device",))
        if self.calibration:
            try:
                CameraCalibration.load(in_base(self.calibration, base))
            except CalibrationError as err:
                raise FieldError(str(err), ("calibration",)) from None
        if self.source in ("file", "folder") and self.path:
            path = in_base(self.path, base)
            exists = path.is_dir() if self.source == "folder" else path.is_file()
            if not exists:
                what = "folder" if self.source == "folder" else "file"
                raise FieldError(
                    f"no such {what} {path}"
                    + (
                        " (relative paths start at the config file's folder)"
                        if not Path(self.path).is_absolute()
                        else ""
                    ),
                    ("path",),
                )


MAIN_CAMERA = "main"  # the name of the one camera a `camera:` section configures
_CAMERA_NAME = re.compile(r"[a-z0-9_-]{1,32}")


def camera_name(value: str) -> str:
    """A camera's name (``cameras[].name``, a check's ``view``): also a part of image file names."""
    if not _CAMERA_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a camera name: 1 to 32 of a-z, 0-9, _ and -")
    return value


class NamedCamera(CameraConfig):
    """One camera of ``cameras:`` (several cameras looking at one part, docs/cameras.md): the
    settings of ``camera:`` and the name the recipes' checks give as their ``view``."""

    name: str = Field(description="the camera's name: a check's view (1 to 32 of a-z, 0-9, _ and -)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return camera_name(value)


def camera_identities(camera: CameraConfig) -> list[tuple[str, str, tuple[str, ...]]]:
    """What makes a camera one device, for refusing two cameras that are the same one: (what, value,
    the key that says it). A GenICam camera by serial, user id or address; an OpenCV device by its
    index or path (index N is /dev/videoN); a stream by its URL; a GStreamer pipeline as written.
    Files, folders and synthetic parts may be shared."""
    if camera.source == "genicam":
        g = camera.genicam
        named = [("serial", g.serial), ("user id", g.user_id), ("address", g.address)]
        keys = {"serial": "serial", "user id": "user_id", "address": "address"}
        return [(f"genicam {what}", v, ("genicam", keys[what])) for what, v in named if v is not None]
    if camera.source == "device" and camera.device is not None:
        device = camera.device
        text = str(device)
        if isinstance(device, int) or text.isascii() and text.isdigit():
            text = f"/dev/video{int(text)}"
        return [("device", text, ("device",))]
    if camera.source == "url" and camera.url:
        return [("url", camera.url.strip(), ("url",))]
    if camera.source == "gstreamer" and camera.pipeline:
        return [("pipeline", " ".join(camera.pipeline.split()), ("pipeline",))]
    return []


class AutoRollback(Strict):
    """The first parts a new production version judges after a live swap are watched; crossing a bound
    puts production back to the last known good version (docs/model-lifecycle.md)."""

    parts: int = Field(default=50, ge=0, le=1_000_000, description="parts watched after a swap (0: no watch)")
    max_error_share: float = Field(default=0.2, ge=0.0, le=1.0, description="ERROR verdicts among them")
    max_uncertain_share: float | None = Field(
        default=None, ge=0.0, le=1.0, description="parts with a check the model was not sure of (uncertain: ...)"
    )
    max_unfamiliar_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="parts the unfamiliar-frame guard flagged (needs the version's reference)",
    )
    max_cycle_p95_ms: float | None = Field(default=None, gt=0, le=600_000, description="their cycle time, p95")


def _quoted_id(value: object) -> object:
    """A version id of digits only reads as a number in YAML: say to quote it (its digits as typed
    may already be lost, e.g. a leading 0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'YAML read {value!r} as a number: quote a version id, e.g. "{value}"')
    return value


class ShadowSettings(Strict):
    """A candidate judging live frames after production's verdict is out, never acting on the PLC
    (docs/model-lifecycle.md, "Shadow on the line")."""

    auto: bool = Field(
        default=False, description="shadow `version` by itself whenever it names a version not shadowed before"
    )
    version: str = Field(
        default="candidate", min_length=1, max_length=64, pattern=r"^(production|candidate|[0-9a-f]{8,64})$",
        description="the version a shadow started from the config (or without a version named) judges: an alias or a version id",
    )  # fmt: skip
    parts: int = Field(
        default=200, ge=0, le=10_000_000, description="a run ends after this many shadowed parts (0: no bound)"
    )
    hours: float = Field(
        default=8.0, ge=0.0, le=24 * 365, description="a run ends this long after it started (0: no bound)"
    )
    max_waiting: int = Field(
        default=0, ge=0, le=8, description="frames waiting beside the one the shadow judges; more are skipped"
    )
    threads: int = Field(default=1, ge=1, le=64, description="the shadow process's model threads")
    on_restart: Literal["resume", "end"] = Field(
        default="resume", description="a run a stop cut short: resume it at the next start, or end it there"
    )

    _version_quoted = field_validator("version", mode="before")(_quoted_id)

    @model_validator(mode="after")
    def _bounded(self):
        if self.parts == 0 and self.hours == 0:
            raise FieldError("a shadow run needs a bound: parts or hours (or both) above 0", ("parts",), ("hours",))
        return self


class ModelConfig(Strict):
    bundle: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")
    backend: Literal["onnxruntime", "tensorrt", "auto"] = Field(
        default="onnxruntime", description="tensorrt: the bundle's engines, falling back to ONNX Runtime"
    )
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] | list[Literal["cpu", "cuda", "tensorrt"]] = "cpu"
    threads: int = Field(default=0, ge=0, le=1024)
    spin: bool = Field(
        default=False,
        description="model worker threads busy-wait between kernels during an "
        "inspection: faster only where nothing else needs those cores (docs/performance.md)",
    )
    max_new_tokens: int = Field(default=96, ge=1, le=1024)
    auto_rollback: AutoRollback = Field(default_factory=AutoRollback)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    gate: GateConfig = Field(default_factory=GateConfig)
    # The model store's alias (production, candidate) ``bundle`` named, when it named one: the station
    # follows it while it runs. ``bundle`` itself holds the folder it pointed at on loading.
    _store_alias: str | None = PrivateAttr(default=None)
    _bundle_quoted = field_validator("bundle", mode="before")(_quoted_id)

    @property
    def store_alias(self) -> str | None:
        return self._store_alias

    def follow_alias(self, alias: str) -> None:
        self._store_alias = alias

    def load(self, build_engines: bool = False) -> VisionLanguageModel:
        """The bundle loaded with these settings: what the station, `try` and `tune` all run.
        ``build_engines``: build missing TensorRT provider engines now (edge-inspect doctor)."""
        from ..vlm import load_bundle

        return load_bundle(
            self.bundle, providers=self.providers, threads=self.threads, backend=self.backend, spin=self.spin,
            build_engines=build_engines,
        )  # fmt: skip

    @property
    def wants_tensorrt(self) -> bool:
        """TensorRT asked for by name (the native engines, or the provider), not only allowed by 'auto'."""
        named = [self.providers] if isinstance(self.providers, str) else self.providers
        return self.backend == "tensorrt" or "tensorrt" in named


class SignalOverride(Strict):
    table: Literal["coil", "discrete_input", "holding_register", "input_register"] | None = None
    address: int | None = Field(default=None, ge=0, le=65535)


class PLCOptions(Strict):
    """Optional parts of the handshake; each adds its signals to the map (docs/plc.md, "Options")."""

    result_buffer: int = Field(default=0, ge=0, le=8, description="results queued while the PLC has not acked; 0 = off")
    recipe_change: bool = Field(default=False, description="PLC switches recipes with recipe_change / _done / _failed")
    identity: bool = Field(default=False, description="model_id, config_id, software_version registers")
    warning: bool = Field(default=False, description="warning bit: uncertain answer resolved by policy, or degraded")
    defect_positions: int = Field(
        default=0,
        ge=0,
        le=MAX_DEFECT_POSITIONS,
        description="first N defect points as x/y registers in 0.1 mm (needs camera.calibration); 0 = off",
    )

    def names(self) -> frozenset[str]:
        return frozenset(
            n for n in ("result_buffer", "recipe_change", "identity", "warning", "defect_positions") if getattr(self, n)
        )


class PLCConfig(Strict):
    enabled: bool = True
    mode: Literal["server", "client"] = "server"
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=5020, ge=1, le=65535)
    serial_port: str | None = Field(default=None, max_length=4096)
    baudrate: int = Field(default=19200, ge=50, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    device_id: int = Field(
        default=1, ge=1, le=247, description="RTU slave address; on TCP the unit id (0 and 255 are answered too)"
    )
    poll_ms: int = Field(default=20, ge=5, le=1000)
    timeout_s: float = Field(
        default=5.0, ge=0.0, le=3600, description="server mode: no PLC request for this long = PLC absent; 0 = off"
    )
    response_timeout_s: float = Field(default=0.5, gt=0.0, le=10.0, description="client mode: one request's answer")
    part_id_encoding: Literal["ascii", "utf-8", "shift_jis"] = "ascii"
    part_id_byte_order: Literal["high_first", "low_first"] = Field(
        default="high_first", description="high_first: the first character in the high byte of each register"
    )
    options: PLCOptions = PLCOptions()
    map: dict[str, SignalOverride] = Field(default_factory=dict)

    @field_validator("map")
    @classmethod
    def _map_works(cls, overrides: dict[str, SignalOverride], info: ValidationInfo) -> dict[str, SignalOverride]:
        options = info.data.get("options") or PLCOptions()
        try:  # mode and options are declared above map, so they are validated already (maps are mode-aware)
            build_map(
                {k: v.model_dump(exclude_none=True) for k, v in overrides.items()},
                info.data.get("mode", "server"),
                options.names(),
                options.defect_positions,
            )
        except MapError as err:
            raise ValueError(str(err)) from None
        return overrides

    def signal_map(self) -> SignalMap:
        return build_map(
            {k: v.model_dump(exclude_none=True) for k, v in self.map.items()},
            self.mode,
            self.options.names(),
            self.options.defect_positions,
        )

    def link_settings(self) -> LinkSettings:
        return LinkSettings(
            mode=self.mode, transport=self.transport, host=self.host, port=self.port, serial_port=self.serial_port or "",
            baudrate=self.baudrate, parity=self.parity, device_id=self.device_id, timeout_s=self.response_timeout_s,
            absent_after_s=self.timeout_s, part_id_encoding=self.part_id_encoding,
            part_id_byte_order=self.part_id_byte_order)  # fmt: skip

    @model_validator(mode="after")
    def _transport(self, info: ValidationInfo):
        if self.transport == "rtu" and not self.serial_port:
            raise FieldError("transport 'rtu' needs serial_port", ("serial_port",), ("transport",))
        if (
            self.enabled
            and self.transport == "rtu"
            and base_dir(info) is not None
            and not Path(self.serial_port or "").exists()
        ):  # opened as given, like at start-up
            raise FieldError(f"no such device {self.serial_port}", ("serial_port",))
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)


class TriggerConfig(Strict):
    plc: bool = True
    interval_s: float = Field(default=0.0, ge=0.0, le=86400, description="free-run period; 0 = off")
    recipe: int = Field(default=1, ge=0, le=65535, description="recipe for free-run and software triggers")


class StorageConfig(Strict):
    dir: str = Field(default="data", min_length=1, max_length=4096)
    save_pass_every: int = Field(
        default=20, ge=0, le=1_000_000, description="keep the image of every Nth PASS; 0 = none"
    )
    retention_days: float = Field(default=30.0, gt=0, le=36525)
    max_disk_mb: float = Field(default=2048.0, gt=0, le=1e9)
    min_free_mb: float = Field(default=200.0, ge=0, le=1e9, description="below this, images are not kept (rows are)")
    models_max_mb: float = Field(
        default=20480.0,
        gt=0,
        le=1e9,
        description="disk budget of the model store (<dir>/models): all versions together",
    )
    pending_max: int = Field(
        default=1000,
        ge=0,
        le=100000,
        description=("results kept in memory while the log cannot be written, flushed when it can"),
    )

    @field_validator("dir")
    @classmethod
    def _not_a_system_folder(cls, value: str, info: ValidationInfo) -> str:
        path = in_base(value, base_dir(info) or Path.cwd())
        resolved = Path(path).resolve()
        for system in ("/proc", "/sys", "/dev"):
            if resolved == Path(system) or resolved.is_relative_to(system) or path.is_relative_to(system):
                raise ValueError(
                    f"{value} is under {system}, a kernel file system; images and the log need a real folder"
                )
        return value
