"""The model store on the station: immutable versions, the aliases production and candidate, the
history of every change, and the shadow request the running station reads (docs/model-lifecycle.md,
"The model store", "Shadow on the line")."""

from .shadow_request import read_request, request_start, request_stop
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
    megabytes,
    utc_now,
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
    "megabytes",
    "read_request",
    "request_start",
    "request_stop",
    "utc_now",
]
