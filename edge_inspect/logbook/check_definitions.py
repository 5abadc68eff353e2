"""A logged check as the station ran it: its prompt (or question), kind and rule's numbers, from the
station file of the inspection's config version (the log keeps every one it ran or saved), else from
the running config's recipes. The dataset export turns review into labels with them, and fleet
publishing sends them with each review so that the plant labels alike (docs/model-lifecycle.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import yaml

from .review import reading
from .store import Store

CheckInfo = dict[str, Any]  # prompt (or question), kind, max (point checks), expect, the settings as written


class RecipeModel(Protocol):
    """A validated recipe (config.Recipe), as the running config holds it."""

    def model_dump(self) -> dict[str, Any]: ...


def recipe_checks(recipes: Sequence[RecipeModel | Mapping[str, Any]]) -> dict[int, dict[str, CheckInfo]]:
    """recipe number → check name → its prompt (pointing) or question (yes/no), kind and max; ``recipes``
    validated (the running config) or as a stored station file's YAML holds them."""
    out: dict[int, dict[str, CheckInfo]] = {}
    for recipe in recipes:
        r = recipe if isinstance(recipe, Mapping) else recipe.model_dump()
        out[int(r["number"])] = {
            c["name"]: {
                "prompt": c.get("prompt") or c.get("question"),
                "kind": c.get("kind"),
                "max": c.get("max", 0),
                "expect": c.get("expect"),
                "settings": c,  # the check as written: the gate judges a model's answer by its rule
            }
            for c in r.get("checks", [])
        }
    return out


class RecipeChecks:
    """A recipe's checks as the station ran them, by config version (a version found is kept: it never
    changes; one not in the log yet is looked for again next time)."""

    def __init__(self, store: Store, current: dict[int, dict[str, CheckInfo]]):
        self.store, self.current = store, current
        self._by_config: dict[str, dict[int, dict[str, CheckInfo]]] = {}

    def of(self, config_sha256: str, recipe: int, db: sqlite3.Connection | None = None) -> dict[str, CheckInfo]:
        """Check name → its definition, for one recipe of one config version. ``db``: read the version on
        this connection (a write transaction's, which must not wait for a reader), else on a reader."""
        found = self._by_config.get(config_sha256)
        if found is None:
            found = self._from_version(config_sha256, db)
            if found is not None:
                self._by_config[config_sha256] = found
        return (found or self.current).get(recipe, {})

    def get(self, config_sha256: str, recipe: int, check: str) -> CheckInfo | None:
        return self.of(config_sha256, recipe).get(check)

    def _from_version(self, sha256: str, db: sqlite3.Connection | None) -> dict[int, dict[str, CheckInfo]] | None:
        query = "select yaml from config_versions where sha256 = ? order by id desc limit 1"
        if db is not None:
            row = db.execute(query, [sha256]).fetchone()
        else:
            with reading(self.store) as reader:
                row = reader.execute(query, [sha256]).fetchone()
        if row is None:
            return None
        try:
            data = yaml.safe_load(row[0])
            return recipe_checks(data.get("recipes") or [])
        except (yaml.YAMLError, AttributeError, TypeError, KeyError, ValueError):
            return None
