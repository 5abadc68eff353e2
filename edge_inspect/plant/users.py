"""Who may log in to the plant web: ``fleet serve --users``'s file (a list of users, ``users: [...]``
or a whole station.yaml's ``web.users``), read again when it changes on disk."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..config import WebUser
from ..errors import UserError

log = logging.getLogger(__name__)


def load_users(path: str | Path) -> list[WebUser]:
    import yaml
    from pydantic import TypeAdapter, ValidationError

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise UserError(f"--users {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"--users {path}: not YAML: {err}") from None
    where: tuple = ()
    if isinstance(data, dict):  # {users: [...]}, or a whole station.yaml: its web.users
        if "users" in data:
            data, where = data["users"], ("users",)
        elif isinstance(data.get("web"), dict) and "users" in data["web"]:
            data, where = data["web"]["users"], ("web", "users")
    if not isinstance(data, list):
        raise UserError(
            f"--users {path}: expected a list of users, a mapping with users: [...], or a station.yaml "
            "with web.users (each user: name, role, password_hash)"
        )
    try:
        return TypeAdapter(list[WebUser]).validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in (*where, *first["loc"])) or "(top)"
        raise UserError(f"--users {path}: {key}: {first['msg']}") from None


class UsersFile:
    """The users file of ``fleet serve``, read again when it changes on disk: a user removed there, or
    given another role or password, loses their sessions at the next request. A file that no longer
    reads keeps the users it had (logged, once per change)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._users = {u.name: u for u in load_users(self.path)}
        self._signature = self._stat()

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def __call__(self) -> dict[str, WebUser]:
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                self._users = {u.name: u for u in load_users(self.path)}
            except UserError as err:
                log.warning("fleet serve: %s; keeping the users read before", err)
        return self._users
