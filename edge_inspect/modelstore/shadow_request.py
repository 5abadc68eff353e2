"""Asking the station to shadow a version (docs/model-lifecycle.md, "Shadow on the line").

``edge-inspect model shadow start|stop`` and the setup page write the request into the model store's
folder (``shadow.json``, replaced durably under the store's lock); the running station reads it every
couple of seconds, as it reads the aliases. Each request has a number one above the last, so the
station acts on each once, also one written while it was stopped."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..durable import write_durably
from .store import ModelStore, ModelStoreError

REQUEST_FILE = "shadow.json"


def read_request(store: ModelStore) -> dict[str, Any] | None:
    """The newest request ({seq, action: start|stop, version, parts, hours, by, at}), None when none was made."""
    path = store.folder / REQUEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise ModelStoreError(f"{path}: cannot be read ({err})") from None
    if (
        not isinstance(data, dict)
        or data.get("action") not in ("start", "stop")
        or not isinstance(data.get("seq"), int)
    ):
        raise ModelStoreError(f"{path}: not a shadow request")
    return data


def _write(store: ModelStore, request: dict[str, Any]) -> dict[str, Any]:
    with store.locked():
        previous = read_request(store)
        request = {"seq": (previous["seq"] if previous else 0) + 1, **request}
        request["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_durably(store.folder / REQUEST_FILE, (json.dumps(request, indent=2) + "\n").encode())
    return request


def request_start(store: ModelStore, name: str, by: str, parts: int, hours: float) -> dict[str, Any]:
    """Ask for a shadow run of the version ``name`` names (an alias or a version id), bounded by
    ``parts`` shadowed parts and ``hours`` (0: no bound; not both 0). ModelStoreError: one line."""
    if parts < 0 or hours < 0 or (parts == 0 and hours == 0):
        raise ModelStoreError(
            "a shadow run needs a bound",
            cli=": --parts or --hours above 0 (and neither below 0)",
            web=": parts or hours above 0 (and neither below 0)",
        )
    version = store.find(name)
    production = store.aliases().get("production")
    if version.id == production:
        raise ModelStoreError(f"version {version.short} is production: a shadow judges another version beside it")
    return _write(store, {"action": "start", "version": version.id, "parts": parts, "hours": hours, "by": by})


def request_stop(store: ModelStore, by: str) -> dict[str, Any]:
    """Ask the station to end the shadow run it has open (nothing happens where none is open)."""
    return _write(store, {"action": "stop", "by": by})
