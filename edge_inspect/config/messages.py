"""What a config error says besides its YAML path: the recipe and check as a person counts them
(recipe numbers as configured, checks from 1, as the HMI and the overlay number them) and, for an
unknown key, the closest key the section knows."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation allows (through Annotated, unions and lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _pick(models: list[type[BaseModel]], value: Any) -> type[BaseModel] | None:
    """Of a union's models, the one whose ``kind`` the value names (a check), else the only one."""
    if len(models) == 1:
        return models[0]
    kind = value.get("kind") if isinstance(value, dict) else None
    for model in models:
        field = model.model_fields.get("kind")
        if field is not None and kind in typing.get_args(field.annotation):
            return model
    return None


def model_at(root: type[BaseModel], loc: tuple, data: Any) -> type[BaseModel] | None:
    """The model of the mapping at ``loc`` (a key path, list positions as ints) in ``data``."""
    annotation: Any = root
    value = data
    for part in loc:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and 0 <= part < len(value) else None
            continue
        model = _pick(_models(annotation), value)
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        annotation, value = field.annotation, value.get(part) if isinstance(value, dict) else None
    return _pick(_models(annotation), value)


def suggestion(root: type[BaseModel], loc: tuple, data: Any) -> str:
    """' — did you mean `expected`?' for an unknown key close to one the section knows, else ''."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    model = model_at(root, loc[:-1], data)
    if model is None:
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _name(item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f" '{name}'" if isinstance(name, str) and name else ""


def people_name(loc: tuple, data: Any) -> str:
    """' (recipe 1 'plate', check 2 'screws')' for a path into recipes, else ''."""
    if len(loc) < 2 or loc[0] != "recipes" or not isinstance(loc[1], int):
        return ""
    recipes = data.get("recipes") if isinstance(data, dict) else None
    recipe = recipes[loc[1]] if isinstance(recipes, list) and loc[1] < len(recipes) else None
    number = recipe.get("number") if isinstance(recipe, dict) else None
    parts = [f"recipe {number}" if type(number) is int else f"recipe at position {loc[1] + 1}"]
    parts[0] += _name(recipe)
    if len(loc) >= 4 and loc[2] == "checks" and isinstance(loc[3], int):
        checks = recipe.get("checks") if isinstance(recipe, dict) else None
        check = checks[loc[3]] if isinstance(checks, list) and loc[3] < len(checks) else None
        parts.append(f"check {loc[3] + 1}{_name(check)}")
    return f" ({', '.join(parts)})"
