"""The model store on the station: immutable versions, the aliases production and candidate, and the
history of every change (docs/model-lifecycle.md, "The model store")."""

from .store import ALIASES, Added, ModelStore, ModelStoreError, Version, default_user, looks_like_version

__all__ = ["ALIASES", "Added", "ModelStore", "ModelStoreError", "Version", "default_user", "looks_like_version"]
