"""The model store on the station: immutable versions, the aliases production and candidate, and the
history of every change (docs/model-lifecycle.md, "The model store")."""

from .store import (
    ALIASES,
    Added,
    GateRequired,
    ModelStore,
    ModelStoreError,
    Version,
    default_user,
    gate_problem,
    looks_like_version,
)

__all__ = [
    "ALIASES",
    "Added",
    "GateRequired",
    "ModelStore",
    "ModelStoreError",
    "Version",
    "default_user",
    "gate_problem",
    "looks_like_version",
]
