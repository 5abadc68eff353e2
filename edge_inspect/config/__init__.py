"""station.yaml: the schema (pydantic, unknown keys rejected) and a loader whose errors name
file:line and the key path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import Field, ValidationError, model_validator

from ..bundles import find_bundle
from ..errors import UserError
from .access import OpcUaConfig, StationInfo, WebConfig, WebUser
from .base import FieldError, Strict, check_host, hosts_overlap, is_loopback
from .devices import (
    MAIN_CAMERA,
    PIXEL_FORMATS,
    CameraConfig,
    GenICamSettings,
    ModelConfig,
    NamedCamera,
    PLCConfig,
    PLCOptions,
    ShadowSettings,
    SignalOverride,
    StorageConfig,
    SyntheticCamera,
    TriggerConfig,
    camera_identities,
)
from .fleet import FleetConfig
from .gate import GateConfig
from .messages import people_name, suggestion
from .recipes import Check, CheckBase, CountCheck, PointCheck, QACheck, Recipe
from .sampling import ReviewSampling
from .unfamiliar import UnfamiliarGuard
from .yaml_loader import MAX_BYTES, YamlProblems, key_text, parse, read_limited


class StationConfig(Strict):
    station: StationInfo = StationInfo()
    camera: CameraConfig = Field(
        default_factory=CameraConfig,
        description="the station's one camera (named main); with cameras: given, a copy of the first of them",
    )
    cameras: list[NamedCamera] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="several cameras looking at one part, each with a name its checks give as their view",
    )
    model: ModelConfig
    recipes: list[Recipe] = Field(min_length=1, max_length=1000)
    triggers: TriggerConfig = TriggerConfig()
    plc: PLCConfig = PLCConfig()
    storage: StorageConfig = StorageConfig()
    web: WebConfig = WebConfig(enabled=False)
    opcua: OpcUaConfig | None = None
    fleet: FleetConfig | None = None
    review_sampling: ReviewSampling = ReviewSampling()
    unfamiliar: UnfamiliarGuard = UnfamiliarGuard()

    @model_validator(mode="after")
    def _cameras(self):
        """``cameras:`` or ``camera:``, not both; names and devices each once; every check's view a camera."""
        if self.cameras is not None:
            if "camera" in self.model_fields_set:
                raise FieldError(
                    "give one camera under camera: or several under cameras:, not both", ("cameras",), ("camera",)
                )
            _distinct_cameras(self.cameras)
            self.camera = CameraConfig.model_validate(self.cameras[0].model_dump(exclude={"name"}))
        names = [c.name for c in self.camera_list()]
        for r, recipe in enumerate(self.recipes):
            for c, check in enumerate(recipe.checks):
                if check.view is not None and check.view not in names:
                    raise FieldError(
                        f"view '{check.view}' is not a camera of this station (cameras: {', '.join(names)})",
                        ("recipes", r, "checks", c, "view"),
                    )
        return self

    def camera_list(self) -> list[NamedCamera]:
        """The station's cameras in order: those of ``cameras:``, or the one of ``camera:`` named main."""
        if self.cameras is not None:
            return list(self.cameras)
        return [
            NamedCamera.model_construct(
                name=MAIN_CAMERA, **{k: getattr(self.camera, k) for k in CameraConfig.model_fields}
            )
        ]

    @model_validator(mode="after")
    def _fleet_checks(self):
        if self.fleet is not None and self.fleet.enabled:
            from .fleet import topic_part

            try:
                topic_part(self.station.name)
            except ValueError as err:
                raise FieldError(
                    f"the station's name is a topic level of fleet publishing: {err}", ("station", "name"), ("fleet",)
                ) from None
        return self

    @model_validator(mode="after")
    def _opcua_checks(self):
        ua = self.opcua
        if ua is None or not ua.enabled:
            return self
        if not ua.anonymous and not (ua.users if ua.users is not None else self.web.users):
            raise FieldError(
                "no user could log in: add opcua.users (or web.users), or allow anonymous",
                ("opcua", "users"),
                ("opcua", "anonymous"),
                ("opcua",),
            )
        host, port = ua.host_port()
        for name, other in (("plc", self.plc), ("web", self.web)):
            if (
                other.enabled
                and port == other.port
                and (name == "web" or (other.transport == "tcp" and other.mode == "server"))
                and hosts_overlap(host, other.host)
            ):
                raise FieldError(
                    f"port {port} is both OPC UA's and the {name} server's; give them different ports",
                    ("opcua", "endpoint"),
                )
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
        if plc.options.defect_positions and not self.camera.calibration:
            raise FieldError(
                "defect positions are in mm: they need camera.calibration (of the first camera; "
                "edge-inspect calibrate camera)",
                ("plc", "options", "defect_positions"),
            )
        if (
            plc.enabled
            and web.enabled
            and plc.transport == "tcp"
            and plc.port == web.port
            and (
                hosts_overlap(plc.host, web.host)
                if plc.mode == "server"
                else is_loopback(plc.host) and (hosts_overlap(plc.host, web.host))
            )
        ):
            raise FieldError(
                f"port {web.port} is both the PLC's (plc.host {plc.host}) and the web server's "
                f"(web.host {web.host}); give them different ports",
                ("web", "port"),
                ("plc", "port"),
            )
        return self

    def recipe(self, number: int) -> Recipe | None:
        return next((r for r in self.recipes if r.number == number), None)


def _distinct_cameras(cameras: list[NamedCamera]) -> None:
    """Each name once, each device once, and several GenICam cameras each named by serial, user id or address."""
    names: dict[str, int] = {}
    seen: dict[tuple[str, str], str] = {}
    genicam = sum(c.source == "genicam" for c in cameras)
    for i, camera in enumerate(cameras):
        if camera.name in names:
            raise FieldError(f"camera name '{camera.name}' is used twice (cameras {names[camera.name] + 1} and {i + 1})",
                             ("cameras", i, "name"))  # fmt: skip
        names[camera.name] = i
        identities = camera_identities(camera)
        if camera.source == "genicam" and not identities and genicam > 1:
            raise FieldError(
                f"camera '{camera.name}': with several genicam cameras, name each by serial, user_id or address",
                ("cameras", i, "genicam"),
            )
        for what, value, key in identities:
            other = seen.get((what, value))
            if other is not None:
                raise FieldError(
                    f"camera '{camera.name}' is camera '{other}' again ({what} {value}): each camera of cameras is "
                    "another device",
                    ("cameras", i, *key),
                )
            seen[(what, value)] = camera.name


class ConfigError(UserError):
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


def _type_hint(e: Mapping[str, Any]) -> str:
    """What was written instead of a number or a boolean: strict types convert nothing."""
    value = e.get("input")
    if e["type"] not in ("int_type", "float_type", "bool_type"):
        return ""
    if isinstance(value, bool):
        return f", not {str(value).lower()}"
    if isinstance(value, str):
        return f", not the text {value!r} (numbers and true/false are written without quotes)"
    return ""


def _written(value: object) -> str:
    """What a YAML value is, in a person's words (for a key that wants another kind of value)."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _section_message(e: Mapping[str, Any]) -> str | None:
    """A section (a set of keys) written as something else: pydantic names its internal class there
    ("a valid dictionary or instance of GateConfig"); say what the key wants and what it got."""
    if e["type"] not in ("model_type", "model_attributes_type", "dict_type"):
        return None
    return f"expected a section of keys (key: value lines, or {{key: value}}), not {_written(e.get('input'))}"


def _problems(err: ValidationError, path: Path, root: yaml.Node | None, data: dict, prefix: tuple = ()) -> list[str]:
    problems = []
    for e in err.errors():
        loc = prefix + tuple(part for part in e["loc"] if part not in ("point", "count", "qa"))
        message = _section_message(e) or e["msg"].removeprefix("Value error, ") + _type_hint(e)
        if e["type"] == "extra_forbidden":
            message = "unknown key" + suggestion(StationConfig, loc, data)
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError) and cause.keys:  # a model-level check about one of its fields
            locs = [loc + tuple(k) for k in cause.keys]
            loc = next((candidate for candidate in locs if _spelled_out(root, candidate)), locs[0])
        plc = data.get("plc")
        if (
            loc == ("plc", "map")
            and message.startswith("signal ")
            and isinstance(plc, dict)
            and isinstance(plc.get("map"), dict)
            and message.split()[1] in plc["map"]
        ):
            loc += (message.split()[1],)  # point at the offending signal's line
        key = (".".join(str(p) for p in loc) or "(top)") + people_name(loc, data)
        problems.append(f"{path}:{_node_line(root, loc)}: {key}: {' '.join(message.split())}")
    return problems


def _refused(path: Path, err: YamlProblems) -> ConfigError:
    """The YAML reader's problems as file:line: key: message lines."""
    return ConfigError(
        [f"{path}:{p.line}: {key_text(p.key)}{people_name(p.key, None)}: {p.message}" for p in err.problems]
    )


def _read_file(path: Path) -> bytes:
    """A station file's bytes, or a ConfigError naming why not (missing, unreadable, over the size limit)."""
    if path.is_dir():
        raise ConfigError([f"{path}: is a folder, not a station file (name the station.yaml in it)"])
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        return read_limited(path)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from None
    except YamlProblems as err:
        raise _refused(path, err) from None


def load_config(path: str | Path, bundle: str | Path | None = None) -> tuple[StationConfig, str]:
    """Parse and validate a station file; returns the config and the sha256 of its bytes.

    ``bundle`` replaces ``model.bundle`` (a command-line override)."""
    path = Path(path)
    return config_from_bytes(_read_file(path), path, bundle)


def config_from_bytes(raw: bytes, path: str | Path, bundle: str | Path | None = None) -> tuple[StationConfig, str]:
    """Validate ``raw`` as if it were the file at ``path`` (relative paths, file:line errors): what the
    setup pages save goes through the same checks as `config validate`."""
    path = Path(path)
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            [f"{path}:1: (top): the file is {len(raw):,} bytes; a station file may be at most {MAX_BYTES:,}"]
        )
    try:
        root, data = parse(raw)
    except YamlProblems as err:
        raise _refused(path, err) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: (top): the file must be a mapping of sections (station, camera, model, ...)"])
    if bundle is not None and isinstance(data.get("model"), dict):
        data["model"]["bundle"] = str(Path(bundle).resolve())
    try:
        config = StationConfig.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as err:
        raise ConfigError(_problems(err, path, root, data)) from None
    config.model.bundle = str(_bundle_folder(config, path, root))
    _check_shadow_version(config, path, root)
    return config, hashlib.sha256(raw).hexdigest()


def problem_at(raw: bytes, path: str | Path, loc: tuple[str | int, ...], message: str) -> ConfigError:
    """A problem found beyond the schema (a camera's feature tree) as a ConfigError at the line of
    ``loc`` in ``raw`` (or of its deepest key the file spells out)."""
    try:
        root, _ = parse(raw)
    except YamlProblems:
        root = None
    return ConfigError([f"{path}:{_node_line(root, loc)}: {'.'.join(str(k) for k in loc)}: {message}"])


def models_folder(storage: StorageConfig, path: Path) -> Path:
    """The station's model store: ``models/`` in ``storage.dir`` (relative to the config file at ``path``)."""
    from ..modelstore.store import STORE_DIR

    folder = Path(storage.dir).expanduser()
    return (folder if folder.is_absolute() else path.resolve().parent / folder) / STORE_DIR


def _check_shadow_version(config: StationConfig, path: Path, root: yaml.Node | None) -> None:
    """``model.shadow.auto: true`` with a version id the model store does not hold is refused, as a
    ``model.bundle`` id is: the station would wait for that version silently. Only where the store is
    there to read (a file validated away from its station is not judged on a store it cannot see); an
    alias (candidate) may name no version yet: the automatic run starts once one is added."""
    from ..modelstore import ModelStore, ModelStoreError, looks_like_version

    shadow = config.model.shadow
    if not shadow.auto or not looks_like_version(shadow.version):
        return
    store = ModelStore(models_folder(config.storage, path))
    if not store.versions_dir.is_dir() or not os.access(store.versions_dir, os.R_OK | os.X_OK):
        return
    try:
        store.find(shadow.version)
    except ModelStoreError as err:
        line = _node_line(root, ("model", "shadow", "version"))
        raise ConfigError([f"{path}:{line}: model.shadow.version: {err} (model.shadow.auto is true)"]) from None


def _bundle_folder(config: StationConfig, path: Path, root: yaml.Node | None) -> Path:
    """The bundle ``model.bundle`` names: an alias (production, candidate) or a version id of the model
    store, else a path or a name on the bundle search path (edge_inspect/bundles.py)."""
    from ..modelstore import ALIASES, ModelStore, ModelStoreError, looks_like_version

    value = config.model.bundle
    line = _node_line(root, ("model", "bundle"))
    store_error = None
    if value in ALIASES or looks_like_version(value):
        store = ModelStore(models_folder(config.storage, path))
        try:
            found_version = store.find(value).path
        except ModelStoreError as err:
            if value in ALIASES:
                raise ConfigError([f"{path}:{line}: model.bundle: {err}"]) from None
            store_error = err  # a hex name: a bundle of that name is looked for too
        else:
            if value in ALIASES:
                config.model.follow_alias(value)
            return found_version
    found, looked = find_bundle(value, path.parent)  # paths are relative to the config file
    if found is None:
        if store_error is not None:
            raise ConfigError([f"{path}:{line}: model.bundle: {store_error}"])
        where = looked[0] if len(looked) == 1 else ", ".join(str(p) for p in looked)
        raise ConfigError([f"{path}:{line}: model.bundle: no model bundle at {where} (manifest.json missing)"])
    return found


def load_storage(path: str | Path) -> tuple[StorageConfig, Path]:
    """The ``storage`` section of a station file alone, and the model store's folder: what the model
    commands need, even while ``model.bundle`` names an alias no version has yet."""
    path = Path(path)
    try:
        root, data = parse(_read_file(path))
    except YamlProblems as err:
        raise _refused(path, err) from None
    section = data.get("storage", {}) if isinstance(data, dict) else {}
    try:
        storage = StorageConfig.model_validate(section, context={"base_dir": path.resolve().parent})
    except ValidationError as err:
        raise ConfigError(_problems(err, path, root, data, prefix=("storage",))) from None
    return storage, models_folder(storage, path)


M = TypeVar("M", bound=Strict)


def _model_section(path: str | Path, key: str, schema: type[M]) -> tuple[StorageConfig, Path, M, Any]:
    """``storage`` and ``model.<key>`` of a station file, that section checked against ``schema`` with
    file:line problems; also the parsed document, for what else the caller reads as written."""
    storage, folder = load_storage(path)
    path = Path(path)
    root, data = parse(_read_file(path))  # load_storage has read it: it parses
    model = data.get("model") if isinstance(data, dict) else None
    section = model.get(key, {}) if isinstance(model, dict) else {}
    try:
        value = schema.model_validate(section)
    except ValidationError as err:
        raise ConfigError(_problems(err, path, root, data, prefix=("model", key))) from None
    return storage, folder, value, data


def load_gate(path: str | Path) -> tuple[StorageConfig, Path, GateConfig, list[Any]]:
    """What the acceptance gate reads of a station file: ``storage`` (the model store and the log),
    ``model.gate`` and the recipes as written (the holdout's prompts, as ``dataset export`` reads them)."""
    storage, folder, gate, data = _model_section(path, "gate", GateConfig)
    recipes = data.get("recipes") if isinstance(data, dict) else None
    return storage, folder, gate, recipes if isinstance(recipes, list) else []


def load_shadow(path: str | Path) -> tuple[StorageConfig, Path, ShadowSettings]:
    """What ``model shadow`` reads of a station file: ``storage`` (the model store and the log) and
    ``model.shadow`` (the defaults of a run started by hand), even while ``model.bundle`` names an
    alias no version has yet."""
    storage, folder, shadow, _ = _model_section(path, "shadow", ShadowSettings)
    return storage, folder, shadow


__all__ = [
    "ConfigError",
    "StationConfig",
    "load_config",
    "load_storage",
    "load_gate",
    "load_shadow",
    "GateConfig",
    "models_folder",
    "config_from_bytes",
    "problem_at",
    "Strict",
    "FieldError",
    "check_host",
    "CheckBase",
    "PointCheck",
    "CountCheck",
    "QACheck",
    "Recipe",
    "Check",
    "SyntheticCamera",
    "CameraConfig",
    "NamedCamera",
    "MAIN_CAMERA",
    "GenICamSettings",
    "PIXEL_FORMATS",
    "ModelConfig",
    "SignalOverride",
    "PLCOptions",
    "PLCConfig",
    "TriggerConfig",
    "StorageConfig",
    "WebUser",
    "WebConfig",
    "OpcUaConfig",
    "StationInfo",
    "FleetConfig",
    "ReviewSampling",
    "UnfamiliarGuard",
]
