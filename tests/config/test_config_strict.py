"""Strict types over the whole station.yaml schema: every integer, number and boolean field of every
section refuses `true`, a quoted value and the other type's values, as pydantic's strict mode on the
sections' base class makes it; the file's own mistakes are named with file:line (test_config_corpus.py)."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from edge_inspect.config import ConfigError, StationConfig, load_config
from edge_inspect.config.base import Strict

from ..support.plc_harness import fake_bundle
from ..support.station_yaml import BASE


def _leaves(annotation) -> list:
    """The plain types an annotation allows (through Annotated, unions, lists, tuples and dicts)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    if origin is typing.Literal:
        return []
    return [leaf for arg in typing.get_args(annotation) if arg is not Ellipsis for leaf in _leaves(arg)]


def _models(model: type[BaseModel], seen: set | None = None) -> set[type[BaseModel]]:
    seen = set() if seen is None else seen
    if model not in seen:
        seen.add(model)
        for field in model.model_fields.values():
            for leaf in _leaves(field.annotation):
                if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                    _models(leaf, seen)
    return seen


def _typed_fields() -> list[tuple[type[BaseModel], str, set]]:
    fields = []
    for model in sorted(_models(StationConfig), key=lambda m: m.__name__):
        for name, field in model.model_fields.items():
            leaves = set(_leaves(field.annotation))
            if leaves & {int, float, bool}:
                fields.append((model, name, leaves))
    return fields


FIELDS = _typed_fields()


def _wrong_values(leaves: set, annotation) -> list:
    """Values each field must refuse: never a conversion from another type."""
    nested = typing.get_origin(annotation) in (list, tuple) or any(
        typing.get_origin(a) in (list, tuple) for a in typing.get_args(annotation)
    )
    wrong = []
    if int in leaves or float in leaves:
        wrong += [True, False]
        if str not in leaves:
            wrong += ["5", "0.5"]
    if int in leaves and float not in leaves:
        wrong.append(2.5)
    if bool in leaves and str not in leaves:
        wrong += ["true", "yes", 1]
    if nested:  # an ROI: the wrong value in one coordinate
        wrong = [[[w, 0.5], [0.9, 0.1], [0.9, 0.9]] for w in (True, "0.5")]
    return wrong


def test_the_walk_finds_every_section_and_numeric_field():
    models = {m.__name__ for m in _models(StationConfig)}
    assert {"CameraConfig", "PLCConfig", "Recipe", "QACheck", "FleetConfig", "WebConfig", "OpcUaConfig"} <= models
    assert all(issubclass(m, Strict) for m in _models(StationConfig))
    numeric = [(m.__name__, n) for m, n, leaves in FIELDS if leaves & {int, float}]
    assert len(numeric) >= 45, numeric
    assert ("Recipe", "number") in numeric and ("PLCConfig", "port") in numeric and ("CheckBase", "roi") not in numeric


@pytest.mark.parametrize(("model", "name", "leaves"), FIELDS, ids=[f"{m.__name__}.{n}" for m, n, _ in FIELDS])
def test_every_integer_number_and_boolean_field_converts_nothing(model, name, leaves):
    annotation = model.model_fields[name].annotation
    blank = model.model_construct()
    for wrong in _wrong_values(leaves, annotation):
        with pytest.raises(ValidationError) as err:
            model.__pydantic_validator__.validate_assignment(blank, name, wrong)
        kinds = {e["type"] for e in err.value.errors() if e["loc"][:1] == (name,)}
        assert kinds and kinds <= {"int_type", "float_type", "bool_type", "int_from_float", "literal_error",
                                   "string_type", "list_type", "tuple_type", "dict_type", "none_required",
                                   "model_type"}, (wrong, err.value.errors())  # fmt: skip


def test_roi_lists_still_make_points_and_unquoted_exponents_are_numbers(tmp_path: Path):
    text = BASE.replace("{bundle}", str(fake_bundle(tmp_path)))
    text = text.replace("        max: 0", "        max: 0\n        roi: [[0.1, 0], [1, 0.1], [0.5, 1]]")
    path = tmp_path / "station.yaml"
    path.write_text(text + "  max_disk_mb: 1e4\n  retention_days: 1.5e1\n")
    config, _ = load_config(path)
    assert config.recipes[0].checks[0].roi == [(0.1, 0.0), (1.0, 0.1), (0.5, 1.0)]
    assert config.storage.max_disk_mb == 10000.0 and config.storage.retention_days == 15.0
    for old, new, line, needle in (
        ("  - number: 1", "  - number: true", 8, "recipes.0.number"),
        ("  port: 5020", "  port: '5020'", 25, "plc.port"),
        ("[[0.1, 0]", "[[true, 0]", 15, "recipes.0.checks.0.roi.0.0"),
        ("        max: 0\n", "        max: 0\n        crop: 'yes'\n", 15, "recipes.0.checks.0.crop"),
    ):
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert any(p.startswith(f"{path}:{line}: {needle}") for p in err.value.problems), err.value.problems


def test_modules_of_the_schema_are_the_ones_walked():
    """A section added later is a Strict model too, so it is walked and strict (no plain BaseModel)."""
    import edge_inspect.config as package

    declared = {
        obj
        for module in vars(package).values()
        if isinstance(module, types.ModuleType) and module.__name__.startswith("edge_inspect.config.")
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__
    }
    walked = _models(StationConfig)
    unwalked = {m for m in declared if not any(issubclass(w, m) for w in walked)}
    assert declared and not unwalked, unwalked


def _sections(model: type[BaseModel], prefix: tuple = ()) -> list[tuple]:
    """The keys of the schema whose value is a section of keys (not inside a list), as key paths."""
    found = []
    for name, field in model.model_fields.items():
        kinds = {typing.get_origin(a) for a in (field.annotation, *typing.get_args(field.annotation))}
        if kinds & {list, tuple, dict}:  # a list of sections, or a mapping
            continue
        models = [leaf for leaf in _leaves(field.annotation) if isinstance(leaf, type) and issubclass(leaf, BaseModel)]
        if len(models) == 1:
            key = prefix + (field.alias or name,)
            found += [key, *_sections(models[0], key)]
    return found


def test_a_section_written_as_a_value_is_named_by_its_key_not_by_a_class(tmp_path: Path):
    """`model: {gate: 5}`: one line naming the file, the line and the key and what it wants; the schema's
    class names (GateConfig) are not the user's words. Every section of the schema, walked."""
    import yaml

    base = yaml.safe_load(BASE.replace("{bundle}", str(fake_bundle(tmp_path))))
    keys = _sections(StationConfig)
    assert {("model", "gate"), ("model", "shadow"), ("camera",), ("fleet", "tls")} <= set(keys)
    classes = {m.__name__ for m in _models(StationConfig)}
    path = tmp_path / "station.yaml"
    for key in keys:
        data = yaml.safe_load(yaml.safe_dump(base))
        section = data
        for part in key[:-1]:
            section = section.setdefault(part, {})
        section[key[-1]] = 5
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(ConfigError) as err:
            load_config(path)
        named = [p for p in err.value.problems if f": {'.'.join(key)}: " in p]
        assert named and named[0].endswith(f"{'.'.join(key)}: expected a section of keys (key: value lines, or "
                                           "{key: value}), not the number 5"), err.value.problems  # fmt: skip
        assert not [p for p in err.value.problems if any(c in p for c in classes)], err.value.problems

    text = BASE.replace("{bundle}", str(fake_bundle(tmp_path))).replace("model:\n", "model:\n  gate: 5\n")
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [f"{path}:6: model.gate: expected a section of keys (key: value lines, or "
                                  "{key: value}), not the number 5"]  # fmt: skip
