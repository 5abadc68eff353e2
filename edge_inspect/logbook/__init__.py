"""The local defect log: the only owner of the SQLite file (schema and migrations, writes,
review queries, retention). Format and retention rules: docs/log.md."""

from . import alarm_history, config_versions, corrections, review, shadow
from .records import InspectionRecord, ViewRecord
from .store import Store, StoreError

__all__ = [
    "InspectionRecord",
    "Store",
    "StoreError",
    "ViewRecord",
    "alarm_history",
    "config_versions",
    "corrections",
    "review",
    "shadow",
]
