"""Bundles for the shadow's tests: the demo student as production, and candidates made from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_inspect.modelstore import ModelStore

from .paths import DEMO_STUDENT


def candidate(folder: Path, swap_yes_no: bool = True, label: str = "candidate") -> Path:
    """A copy of the demo student under another version id. ``swap_yes_no``: its yes and no answer
    tokens swapped in the manifest, so it answers every yes/no check the other way round (the pointing
    checks judge as production's); else the same model with another ``created``."""
    copy = Path(shutil.copytree(DEMO_STUDENT, folder))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["created"] = f"{manifest['created']} {label}"
    if swap_yes_no:
        tokens = manifest["tokens"]
        tokens["yes"], tokens["no"] = tokens["no"], tokens["yes"]
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def store_with_candidate(data: Path, folder: Path, swap_yes_no: bool = True) -> tuple[ModelStore, str, str]:
    """A model store in ``data``/models: the demo student as production, a candidate beside it."""
    store = ModelStore(data / "models")
    production = store.add(DEMO_STUDENT, "commissioning", alias="production").version.id
    made = candidate(folder, swap_yes_no)
    cand = store.add(made, "qa", parent=production, alias="candidate").version.id
    return store, production, cand
