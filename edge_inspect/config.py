"""station.yaml: the schema (pydantic, unknown keys rejected) and a loader whose errors name
file:line and the key path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .bundles import find_bundle
from .config_yaml import YamlProblems, key_text, parse, read_limited
from .plc.settings import LinkSettings
from .plc.signals import MapError, SignalMap, build_map


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FieldError(ValueError):
    """A problem a model-level validator finds in one of its fields: ``keys`` are candidate key paths
    below the model's (tuples); the error is reported at the first one the file spells out."""

    def __init__(self, message: str, *keys: tuple[str, ...]):
        super().__init__(message)
        self.keys = keys


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_host(value: str) -> str:
    """An IP address or a valid host name (RFC 1123)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if (not value or len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()):
        raise ValueError(f"{value!r} is neither an IP address nor a valid host name")
    return value


def _hosts_overlap(a: str, b: str) -> bool:
    """Whether listening on host ``a`` and host ``b`` can clash (the same address, or a wildcard)."""
    def addr(h: str):
        try:
            return ipaddress.ip_address(h)
        except ValueError:
            return None

    ia, ib = addr(a), addr(b)
    if (ia is not None and ia.is_unspecified) or (ib is not None and ib.is_unspecified):
        return True
    loopback = [h.lower() == "localhost" or (i is not None and i.is_loopback) for h, i in ((a, ia), (b, ib))]
    if all(loopback) and "localhost" in (a.lower(), b.lower()):
        return True
    return (ia == ib) if ia is not None and ib is not None else a.lower().rstrip(".") == b.lower().rstrip(".")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def _base_dir(info: ValidationInfo) -> Path | None:
    """The config file's folder while load_config validates (paths in the file are relative to it)."""
    return (info.context or {}).get("base_dir") if info.context is not None else None


def _in_base(value: str, base: Path) -> Path:
    if "\0" in value:
        raise ValueError("a path may not contain a NUL character")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


Polygon = list[tuple[float, float]]


def _check_polygon(roi: Polygon | None) -> Polygon | None:
    if roi is None:
        return None
    if len(roi) < 3:
        raise ValueError("an ROI polygon needs at least 3 points")
    if len(roi) > 64:
        raise ValueError(f"an ROI polygon has at most 64 points, not {len(roi)}")
    for x, y in roi:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"ROI point ({x}, {y}) lies outside the frame (coordinates are fractions 0..1)")
    area = abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(roi, roi[1:] + roi[:1], strict=True))) / 2
    if area < 1e-6:
        raise ValueError("the ROI polygon encloses no area (its points are collinear or repeated)")
    return roi


class CheckBase(Strict):
    name: str = Field(min_length=1, max_length=40)
    roi: Polygon | None = Field(default=None, description="polygon of (x, y) fractions of the frame")
    crop: bool = Field(default=False, description="run the model on the ROI's bounding box only")

    @field_validator("roi")
    @classmethod
    def _roi_inside_frame(cls, roi: Polygon | None) -> Polygon | None:
        return _check_polygon(roi)

    @model_validator(mode="after")
    def _crop_needs_roi(self):
        if self.crop and self.roi is None:
            raise ValueError("crop: true needs an roi")
        return self


class PointCheck(CheckBase):
    kind: Literal["point"]
    prompt: str = Field(min_length=1, max_length=1000)
    min: int = Field(default=0, ge=0, le=1000)
    max: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="after")
    def _range(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class CountCheck(CheckBase):
    kind: Literal["count"]
    prompt: str = Field(min_length=1, max_length=1000)
    expected: int = Field(ge=0, le=1000)


class QACheck(CheckBase):
    kind: Literal["qa"]
    question: str = Field(min_length=1, max_length=1000)
    expect: Literal["yes", "no"]
    min_margin: float = Field(default=0.2, ge=0.0, le=1.0)
    on_uncertain: Literal["fail", "error", "pass"] = "fail"


Check = Annotated[PointCheck | CountCheck | QACheck, Field(discriminator="kind")]


class Recipe(Strict):
    number: int = Field(ge=0, le=65535)
    name: str = Field(min_length=1, max_length=200)
    checks: list[Check] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique within a recipe: {', '.join(dupes)}")
        return self


class SyntheticCamera(Strict):
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    width: int = Field(default=320, ge=64, le=4096)
    height: int = Field(default=240, ge=64, le=4096)


class CameraConfig(Strict):
    source: Literal["synthetic", "device", "url", "gstreamer", "file", "folder"] = "synthetic"
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
    max_frame_age_ms: float = Field(default=500.0, gt=0, le=3_600_000,
                                    description="live sources: an older frame is never inspected")
    frames_after_trigger: int = Field(default=2, ge=1, le=10, description=(
        "live sources: inspect the n-th frame that arrives after the trigger (the first may have been sent before it)"))
    synthetic: SyntheticCamera = SyntheticCamera()
    calibration: str | None = Field(default=None, max_length=4096, description=(
        "camera calibration JSON from `edge-inspect calibrate camera` (relative to this file): frames are "
        "undistorted and points are also logged in millimetres on the working plane"))

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
        if self.reconnect_min_s > self.reconnect_max_s:
            raise FieldError(f"reconnect_min_s ({self.reconnect_min_s}) is greater than reconnect_max_s "
                             f"({self.reconnect_max_s})", ("reconnect_min_s",), ("reconnect_max_s",))
        base = _base_dir(info)
        if base is not None:  # while loading a file: what the source names must exist on this machine
            self._source_exists(base)
        return self

    def _source_exists(self, base: Path) -> None:
        device = self.device if self.source == "device" and isinstance(self.device, str) else None
        if device is not None and not (device.isascii() and device.isdigit()):
            if not device.startswith("/"):
                raise FieldError(f"{device!r} is neither an index (0) nor a device path (/dev/video0)", ("device",))
            if not _in_base(device, base).exists():
                raise FieldError(f"no such device {device}", ("device",))
        elif device is not None and (len(device) > 3 or int(device) > 255):
            raise FieldError(f"device index {device} is out of range (0..255)", ("device",))
        if self.source in ("file", "folder") and self.path:
            path = _in_base(self.path, base)
            exists = path.is_dir() if self.source == "folder" else path.is_file()
            if not exists:
                what = "folder" if self.source == "folder" else "file"
                raise FieldError(f"no such {what} {path}" + (" (relative paths start at the config file's folder)"
                                                            if not Path(self.path).is_absolute() else ""), ("path",))


class ModelConfig(Strict):
    bundle: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")
    backend: Literal["onnxruntime", "tensorrt", "auto"] = Field(
        default="onnxruntime", description="tensorrt: the bundle's engines, falling back to ONNX Runtime")
    providers: Literal["auto", "cpu", "cuda", "tensorrt"] | list[Literal["cpu", "cuda", "tensorrt"]] = "cpu"
    threads: int = Field(default=0, ge=0, le=1024)
    max_new_tokens: int = Field(default=96, ge=1, le=1024)


class SignalOverride(Strict):
    table: Literal["coil", "discrete_input", "holding_register", "input_register"] | None = None
    address: int | None = Field(default=None, ge=0, le=65535)


class PLCOptions(Strict):
    """Optional parts of the handshake; each adds its signals to the map (docs/plc.md, "Options")."""

    result_buffer: int = Field(default=0, ge=0, le=8, description="results queued while the PLC has not acked; 0 = off")
    recipe_change: bool = Field(default=False, description="PLC switches recipes with recipe_change / _done / _failed")
    identity: bool = Field(default=False, description="model_id, config_id, software_version registers")
    warning: bool = Field(default=False, description="warning bit: uncertain answer resolved by policy, or degraded")

    def names(self) -> frozenset[str]:
        return frozenset(n for n in ("result_buffer", "recipe_change", "identity", "warning") if getattr(self, n))


class PLCConfig(Strict):
    enabled: bool = True
    mode: Literal["server", "client"] = "server"
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=5020, ge=1, le=65535)
    serial_port: str | None = Field(default=None, max_length=4096)
    baudrate: int = Field(default=19200, ge=50, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    device_id: int = Field(default=1, ge=1, le=247, description="RTU slave address; on TCP the unit id (0 and 255 are answered too)")
    poll_ms: int = Field(default=20, ge=5, le=1000)
    timeout_s: float = Field(default=5.0, ge=0.0, le=3600, description="server mode: no PLC request for this long = PLC absent; 0 = off")
    response_timeout_s: float = Field(default=0.5, gt=0.0, le=10.0, description="client mode: one request's answer")
    part_id_encoding: Literal["ascii", "utf-8", "shift_jis"] = "ascii"
    part_id_byte_order: Literal["high_first", "low_first"] = Field(
        default="high_first", description="high_first: the first character in the high byte of each register")
    options: PLCOptions = PLCOptions()
    map: dict[str, SignalOverride] = Field(default_factory=dict)

    @field_validator("map")
    @classmethod
    def _map_works(cls, overrides: dict[str, SignalOverride], info: ValidationInfo) -> dict[str, SignalOverride]:
        options = info.data.get("options") or PLCOptions()
        try:  # mode and options are declared above map, so they are validated already (maps are mode-aware)
            build_map({k: v.model_dump(exclude_none=True) for k, v in overrides.items()}, info.data.get("mode", "server"),
                      options.names())
        except MapError as err:
            raise ValueError(str(err)) from None
        return overrides

    def signal_map(self) -> SignalMap:
        return build_map({k: v.model_dump(exclude_none=True) for k, v in self.map.items()}, self.mode,
                         self.options.names())

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
        if (self.enabled and self.transport == "rtu" and _base_dir(info) is not None
                and not Path(self.serial_port).exists()):  # opened as given, like at start-up
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
    save_pass_every: int = Field(default=20, ge=0, le=1_000_000, description="keep the image of every Nth PASS; 0 = none")
    retention_days: float = Field(default=30.0, gt=0, le=36525)
    max_disk_mb: float = Field(default=2048.0, gt=0, le=1e9)
    min_free_mb: float = Field(default=200.0, ge=0, le=1e9, description="below this, images are not kept (rows are)")
    pending_max: int = Field(default=1000, ge=0, le=100000, description=(
        "results kept in memory while the log cannot be written, flushed when it can"))

    @field_validator("dir")
    @classmethod
    def _not_a_system_folder(cls, value: str, info: ValidationInfo) -> str:
        path = _in_base(value, _base_dir(info) or Path.cwd())
        resolved = Path(path).resolve()
        for system in ("/proc", "/sys", "/dev"):
            if resolved == Path(system) or resolved.is_relative_to(system) or path.is_relative_to(system):
                raise ValueError(f"{value} is under {system}, a kernel file system; images and the log need a real folder")
        return value


class WebUser(Strict):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["operator", "qa", "integrator"]
    password_hash: str = Field(description="from `edge-inspect user hash-password`")

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        from .web.auth import parse_hash

        parse_hash(value)  # ValueError names what is wrong; a placeholder is refused here
        return value


class WebConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    open_view: bool = Field(default=True, description="HMI and review readable without a login")
    secret_key: str | None = Field(default=None, min_length=16, max_length=1024, description="session signing key; default: kept in the data folder")
    shift_starts: list[str] = Field(default_factory=lambda: ["06:00", "14:00", "22:00"], max_length=24)
    users: list[WebUser] = Field(default_factory=list, max_length=1000)
    tls_cert: str | None = Field(default=None, max_length=4096, description="PEM certificate: serve HTTPS (Secure cookies, HSTS)")
    tls_key: str | None = Field(default=None, max_length=4096, description="PEM private key of tls_cert")
    session_idle_min: float = Field(default=30.0, gt=0, le=24 * 60, description="log out after this idle time")
    session_max_h: float = Field(default=12.0, gt=0, le=24 * 7, description="log out after this long in all")

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[WebUser]) -> list[WebUser]:
        seen = set()
        for u in users:
            if u.name in seen:
                raise ValueError(f"user {u.name!r} is listed twice")
            seen.add(u.name)
        return users

    @model_validator(mode="after")
    def _tls_pair(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            raise FieldError("tls_cert and tls_key go together", ("tls_cert",), ("tls_key",))
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():  # the web server opens them as given
                raise FieldError(f"no such file {path}", (name,))
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("shift_starts")
    @classmethod
    def _times(cls, starts: list[str]) -> list[str]:
        for t in starts:
            hh, _, mm = t.partition(":")
            if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError(f"shift start {t!r} is not HH:MM")
        return starts


class OpcUaConfig(Strict):
    """The OPC UA server (docs/opcua.md): an address space after OPC 40100-1 (Machine Vision)."""

    enabled: bool = True
    endpoint: str = Field(default="opc.tcp://127.0.0.1:4840/edge-inspect", max_length=4096,
                          description="opc.tcp://HOST:PORT/PATH; HOST is the address to listen on")
    security: list[Literal["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign", "None"]] = Field(
        default_factory=lambda: ["Basic256Sha256_SignAndEncrypt"], min_length=1, max_length=3,
        description="endpoints offered; None sends everything in clear text (test benches only)")
    certificate: str | None = Field(default=None, max_length=4096, description=(
        "server certificate (DER or PEM); default: generated on first start into <storage.dir>/opcua/"))
    private_key: str | None = Field(default=None, max_length=4096, description="PEM private key of certificate")
    trusted_clients: str | None = Field(default=None, max_length=4096, description=(
        "folder of trusted client certificates (DER/PEM); unset: any client certificate, users log in"))
    anonymous: bool = Field(default=False, description="anonymous sessions (browse, read, subscribe; no methods)")
    users: list[WebUser] | None = Field(default=None, max_length=1000, description="default: web.users")
    namespace: str = Field(default="urn:edge-inspect:vision", min_length=1, max_length=1024)

    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        url = urlsplit(self.endpoint)
        return url.hostname or "", url.port or 4840

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            url = urlsplit(value)
            port = url.port
        except ValueError as err:
            raise ValueError(f"{value!r} is not an opc.tcp:// URL ({err})") from None
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"{value!r} is not an opc.tcp://HOST:PORT/PATH URL")
        if port == 0:
            raise ValueError("the port must be 1..65535")
        check_host(url.hostname)
        return value

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[WebUser] | None) -> list[WebUser] | None:
        return None if users is None else WebConfig._unique_users(users)

    @model_validator(mode="after")
    def _files(self, info: ValidationInfo):
        if bool(self.certificate) != bool(self.private_key):
            raise FieldError("certificate and private_key go together", ("certificate",), ("private_key",))
        base = _base_dir(info)
        if base is not None:
            for name in ("certificate", "private_key", "trusted_clients"):
                value = getattr(self, name)
                if value and not _in_base(value, base).exists():
                    raise FieldError(f"no such {'folder' if name == 'trusted_clients' else 'file'} {value}", (name,))
        return self


class StationInfo(Strict):
    name: str = Field(default="station", min_length=1, max_length=200)
    language: Literal["en", "ja"] | None = Field(default=None, description=(
        "pin the HMI language; unset: each browser's Accept-Language (a person's choice on the page wins)"))
    timezone: str | None = Field(default=None, max_length=64, description=(
        "IANA zone for every time shown (pages, filters, charts, CSV), e.g. Asia/Tokyo; default the OS zone"))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str | None) -> str | None:
        if name:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
        return name


class StationConfig(Strict):
    station: StationInfo = StationInfo()
    camera: CameraConfig = CameraConfig()
    model: ModelConfig
    recipes: list[Recipe] = Field(min_length=1, max_length=1000)
    triggers: TriggerConfig = TriggerConfig()
    plc: PLCConfig = PLCConfig()
    storage: StorageConfig = StorageConfig()
    web: WebConfig = WebConfig(enabled=False)
    opcua: OpcUaConfig | None = None

    @model_validator(mode="after")
    def _opcua_checks(self):
        ua = self.opcua
        if ua is None or not ua.enabled:
            return self
        if not ua.anonymous and not (ua.users if ua.users is not None else self.web.users):
            raise FieldError("no user could log in: add opcua.users (or web.users), or allow anonymous",
                             ("opcua", "users"), ("opcua", "anonymous"), ("opcua",))
        host, port = ua.host_port()
        for name, other in (("plc", self.plc), ("web", self.web)):
            if (other.enabled and port == other.port and (name == "web" or (other.transport == "tcp" and other.mode == "server"))
                    and _hosts_overlap(host, other.host)):
                raise FieldError(f"port {port} is both OPC UA's and the {name} server's; give them different ports",
                                 ("opcua", "endpoint"))
        return self

    @model_validator(mode="after")
    def _cross_checks(self):
        numbers = [r.number for r in self.recipes]
        dupes = sorted({n for n in numbers if numbers.count(n) > 1})
        if dupes:
            raise ValueError(f"recipe numbers must be unique: {dupes}")
        if self.triggers.recipe not in numbers:
            raise ValueError(f"triggers.recipe {self.triggers.recipe} is not one of the recipes {numbers}")
        plc, web = self.plc, self.web
        if (plc.enabled and web.enabled and plc.transport == "tcp" and plc.port == web.port
                and (_hosts_overlap(plc.host, web.host) if plc.mode == "server" else _is_loopback(plc.host)
                     and (_hosts_overlap(plc.host, web.host)))):
            raise FieldError(f"port {web.port} is both the PLC's (plc.host {plc.host}) and the web server's "
                             f"(web.host {web.host}); give them different ports", ("web", "port"), ("plc", "port"))
        return self

    def recipe(self, number: int) -> Recipe | None:
        return next((r for r in self.recipes if r.number == number), None)


class ConfigError(Exception):
    """Every problem found in a config file, one per line as 'file:line: key.path: message'."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _node_line(root: yaml.Node | None, loc: tuple) -> int:
    """1-based line of the YAML node at ``loc`` (or its deepest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else 1)
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1  # the line of the key
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _spelled_out(root: yaml.Node | None, loc: tuple) -> bool:
    """Whether every key of ``loc`` is written in the file."""
    node = root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return False
        if node is None:
            return False
    return True


def _problems(err: ValidationError, path: Path, root: yaml.Node | None, data: dict) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(part for part in e["loc"] if part not in ("point", "count", "qa"))
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown key"
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError) and cause.keys:  # a model-level check about one of its fields
            locs = [loc + tuple(k) for k in cause.keys]
            loc = next((candidate for candidate in locs if _spelled_out(root, candidate)), locs[0])
        plc = data.get("plc")
        if (loc == ("plc", "map") and message.startswith("signal ") and isinstance(plc, dict)
                and isinstance(plc.get("map"), dict) and message.split()[1] in plc["map"]):
            loc += (message.split()[1],)  # point at the offending signal's line
        key = ".".join(str(p) for p in loc) or "(top)"
        problems.append(f"{path}:{_node_line(root, loc)}: {key}: {' '.join(message.split())}")
    return problems


def load_config(path: str | Path, bundle: str | Path | None = None) -> tuple[StationConfig, str]:
    """Parse and validate a station file; returns the config and the sha256 of its bytes.

    ``bundle`` replaces ``model.bundle`` (a command-line override)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        raw = read_limited(path)
        root, data = parse(raw)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from None
    except YamlProblems as err:
        raise ConfigError([f"{path}:{p.line}: {key_text(p.key)}: {p.message}" for p in err.problems]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: (top): the file must be a mapping of sections (station, camera, model, ...)"])
    if bundle is not None and isinstance(data.get("model"), dict):
        data["model"]["bundle"] = str(Path(bundle).resolve())
    try:
        config = StationConfig.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as err:
        raise ConfigError(_problems(err, path, root, data)) from None
    found, looked = find_bundle(config.model.bundle, path.parent)  # paths are relative to the config file
    if found is None:
        line = _node_line(root, ("model", "bundle"))
        where = looked[0] if len(looked) == 1 else ", ".join(str(p) for p in looked)
        raise ConfigError([f"{path}:{line}: model.bundle: no model bundle at {where} (manifest.json missing)"])
    config.model.bundle = str(found)
    return config, hashlib.sha256(raw).hexdigest()
