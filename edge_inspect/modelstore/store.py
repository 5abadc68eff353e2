"""The model store: immutable model versions under ``<storage.dir>/models/`` and the aliases that name them.

A version is a read-only copy of a bundle in ``versions/<id>/``, named by its id: the sha256 of the
bundle's ``manifest.json``, which holds the sha256 and size of every file of the bundle, so the id is
a hash over all its files and the very value the log keeps as ``model_sha256``. ``version.json``
beside the bundle's files says where it came from, who added it and when, its parent version, its
size and the slots for its report and gate result. ``aliases.json`` names the versions
``production`` and ``candidate`` and keeps every change (who, when, what) and the productions before
the current one, newest last, for ``rollback``. docs/model-lifecycle.md, "The model store".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..durable import write_durably
from ..errors import UserError
from ..vlm.bundle import MANIFEST, load_bundle_files, sha256_file

ALIASES = ("production", "candidate")
STORE_DIR = "models"
VERSIONS = "versions"
ALIASES_FILE = "aliases.json"
VERSION_FILE = "version.json"
LOCK_FILE = ".lock"
MIN_PREFIX = 8
HISTORY_KEPT = 2000  # audit entries kept in aliases.json, oldest dropped first
REPORT_FILES = ("report.json", "REPORT.md")  # a bundle's evaluation report, where the export wrote one
_HEX = re.compile(r"^[0-9a-f]+$")


def manifest_parent(manifest: dict[str, Any]) -> str | None:
    """The version a bundle was trained from, as its manifest's ``lineage.parent.version`` names it
    (the sha256 of the parent's manifest); None where the manifest names none."""
    lineage = manifest.get("lineage")
    parent = lineage.get("parent") if isinstance(lineage, dict) else None
    version = parent.get("version") if isinstance(parent, dict) else None
    return version if isinstance(version, str) and re.fullmatch(r"[0-9a-f]{64}", version) else None


class ModelStoreError(UserError):
    """A model store operation refused: the message says why, in one line. Where it advises what to do,
    the advice comes in two wordings: ``cli`` for the command line (``str(err)``, what edge-inspect
    prints) and ``web`` for the setup page and the API (``err.web``)."""

    def __init__(self, message: str, cli: str = "", web: str = ""):
        super().__init__(message + cli)
        self.web = message + web


class GateRequired(ModelStoreError):
    """A promote to production of a version whose gate did not pass against production (``force``)."""


def gate_problem(version: Version, production: str | None) -> str | None:
    """Why ``version`` may not become production without an override; None when it may: nothing is
    production yet, it is production already, or its gate passed against that very production."""
    if production is None or production == version.id:
        return None
    gate = version.info.get("gate")
    if not isinstance(gate, dict):
        return f"version {version.short} has no gate result"
    if gate.get("against") != production:
        return f"version {version.short} was gated against {str(gate.get('against'))[:12]}, not production {production[:12]}"
    if not gate.get("passed"):
        return f"version {version.short} failed its gate against production {production[:12]}"
    return None


def looks_like_version(value: str) -> bool:
    """``value`` could name a version: at least MIN_PREFIX lowercase hex digits, at most a full sha256."""
    return MIN_PREFIX <= len(value) <= 64 and bool(_HEX.match(value))


def utc_now() -> str:
    """The time now in UTC as the store's history and the gate's report write it (2026-01-31T12:00:00Z)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def megabytes(size: float) -> str:
    """A byte count as the store's messages and ``model list`` show it: "1,234.5 MB"."""
    return f"{size / 1e6:,.1f} MB"


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _bundle_files(bundle: Path) -> list[Path]:
    """What a version keeps of a bundle folder: every file but hidden ones, symlinks and a version.json."""
    found = []
    for path in sorted(bundle.rglob("*")):
        rel = path.relative_to(bundle)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink() or not path.is_file():
            continue
        if rel == Path(VERSION_FILE):
            continue
        found.append(rel)
    return found


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_read_only(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        elif path.is_dir():
            path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def _set_writable(folder: Path) -> None:
    folder.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    for path in folder.rglob("*"):
        if path.is_dir():
            path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


@dataclass(frozen=True)
class Version:
    """One stored version, as its version.json describes it."""

    id: str
    path: Path
    info: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.info.get("bytes", 0))

    @property
    def short(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class Added:
    version: Version
    new: bool  # False: the same bundle was already there (nothing copied)


class ModelStore:
    """The model versions and aliases of one station (``folder`` is ``<storage.dir>/models``).

    ``max_bytes``: the disk budget of all versions together; an add that would exceed it is refused."""

    def __init__(self, folder: Path, max_bytes: float = float("inf")):
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    @classmethod
    def of_storage(cls, storage_dir: Path, models_max_mb: float = float("inf")) -> ModelStore:
        return cls(Path(storage_dir) / STORE_DIR, models_max_mb * 1e6)

    # reading

    @property
    def versions_dir(self) -> Path:
        return self.folder / VERSIONS

    def versions(self) -> list[Version]:
        """Every stored version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        found = [
            self._read_version(p) for p in self.versions_dir.iterdir() if p.is_dir() and looks_like_version(p.name)
        ]
        return sorted(found, key=lambda v: (v.info.get("added_at", ""), v.id))

    def _read_version(self, path: Path) -> Version:
        try:
            info = json.loads((path / VERSION_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            info = {"bytes": _tree_size(path), "problem": f"{VERSION_FILE} missing or unreadable"}
        return Version(path.name, path, info if isinstance(info, dict) else {})

    def used_bytes(self) -> int:
        return sum(v.size for v in self.versions())

    def state(self) -> dict[str, Any]:
        """aliases.json: {"aliases": {alias: id}, "productions": [ids, newest last], "history": [...]}."""
        path = self.folder / ALIASES_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, json.JSONDecodeError) as err:
            raise ModelStoreError(f"{path}: cannot be read ({err})") from None
        data = data if isinstance(data, dict) else {}
        data.setdefault("aliases", {})
        data.setdefault("productions", [])
        data.setdefault("history", [])
        return data

    def aliases(self) -> dict[str, str]:
        return {k: v for k, v in self.state()["aliases"].items() if k in ALIASES and v}

    def find(self, name: str) -> Version:
        """The version an alias or a version id (a prefix of at least MIN_PREFIX hex digits) names."""
        if name in ALIASES:
            target = self.aliases().get(name)
            if target is None:
                raise ModelStoreError(
                    f"no version is {name} in {self.folder}",
                    cli=f" (edge-inspect model add BUNDLE --as {name}, or model promote)",
                    web=f" (make one of the listed versions {name}; a new bundle is added on the appliance)",
                )
            if not (self.versions_dir / target).is_dir():
                raise ModelStoreError(f"{name} names version {target[:12]}, which is not in {self.versions_dir}")
            return self._read_version(self.versions_dir / target)
        if not looks_like_version(name):
            raise ModelStoreError(
                f"{name!r} names no model version: give production, candidate or {MIN_PREFIX}+ hex digits of a version id"
            )
        matches = [v for v in self.versions() if v.id.startswith(name)]
        if not matches:
            raise ModelStoreError(
                f"no model version {name} in {self.versions_dir}",
                cli=" (edge-inspect model list)",
                web=" (the model versions page and GET /api/models list them)",
            )
        if len(matches) > 1:
            raise ModelStoreError(f"{name} is the start of {len(matches)} versions' ids; give more digits")
        return matches[0]

    # changing

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The store's lock (a file lock, so another process's command waits too), held for a change
        of the store's files: versions, aliases, history, the shadow request."""
        import fcntl

        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._clear_leftovers()
            yield

    def _clear_leftovers(self) -> None:
        """What an add or a remove cut short (a crash, a kill) left: half a copy, half a deletion.
        Only called with the lock held, when no other command is in the middle of one."""
        for path in self.versions_dir.iterdir():
            if path.name.startswith((".incoming-", ".removing-")) and path.is_dir():
                _set_writable(path)
                shutil.rmtree(path, ignore_errors=True)

    def _record(self, state: dict[str, Any], user: str, action: str, **what: Any) -> None:
        state["history"].append({"at": utc_now(), "by": user, "action": action, **what})
        del state["history"][:-HISTORY_KEPT]
        write_durably(self.folder / ALIASES_FILE, (json.dumps(state, indent=2) + "\n").encode())

    def add(self, bundle: Path, user: str, parent: str | None = None, alias: str | None = None) -> Added:
        """Copy a verified bundle in as a new version (or name the one it already is); ``alias``: point
        candidate or production at it as well."""
        bundle = Path(bundle).resolve()
        loaded = load_bundle_files(bundle)  # every listed file is there with its size and sha256
        version_id = loaded.sha256
        if parent is not None:
            parent = self.find(parent).id
        else:  # a fine-tuned bundle names the version it was trained from (tools.distill, the manifest's lineage)
            parent = manifest_parent(loaded.manifest)
        with self.locked():
            target = self.versions_dir / version_id
            new = not target.is_dir()
            if new:
                files = _bundle_files(bundle)
                size = sum((bundle / f).stat().st_size for f in files)
                used = self.used_bytes()
                if used + size > self.max_bytes:
                    raise ModelStoreError(
                        f"{bundle}: {megabytes(size)} would take the model store to {megabytes(used + size)}, over its budget "
                        f"storage.models_max_mb ({megabytes(self.max_bytes)}; {megabytes(used)} in use): remove a version first"
                    )
                self._copy_in(bundle, files, target, {
                    "id": version_id, "source": str(bundle), "added_by": user, "added_at": utc_now(),
                    "parent": parent, "bytes": size, "files": len(files),
                    "created": loaded.manifest.get("created"),
                    "report": next((f for f in REPORT_FILES if (bundle / f).is_file()), None),
                    "gate": None,
                })  # fmt: skip
            state = self.state()
            if new:
                self._record(state, user, "add", version=version_id, source=str(bundle))
            version = self._read_version(target)
            if alias is not None:
                self._point(state, alias, version.id, user, "promote")
        return Added(version, new)

    def _copy_in(self, bundle: Path, files: list[Path], target: Path, info: dict[str, Any]) -> None:
        incoming = self.versions_dir / f".incoming-{target.name}-{os.getpid()}"
        if incoming.exists():
            _set_writable(incoming)
            shutil.rmtree(incoming)
        try:
            for rel in files:
                (incoming / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle / rel, incoming / rel)
                _fsync(incoming / rel)
            (incoming / VERSION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            _fsync(incoming / VERSION_FILE)
            if sha256_file(incoming / MANIFEST) != target.name:
                raise ModelStoreError(f"{bundle / MANIFEST}: changed while it was copied; add it again")
            load_bundle_files(incoming)  # the copy is what the manifest lists
            _set_read_only(incoming)
            os.rename(incoming, target)
            _fsync(self.versions_dir)
        except BaseException:
            if incoming.exists():
                _set_writable(incoming)
                shutil.rmtree(incoming, ignore_errors=True)
            raise

    def _point(self, state: dict[str, Any], alias: str, version_id: str, user: str, action: str, **extra: Any) -> None:
        if alias not in ALIASES:
            raise ModelStoreError(f"{alias!r} is not an alias: {' or '.join(ALIASES)}")
        previous = state["aliases"].get(alias)
        state["aliases"][alias] = version_id
        if alias == "production" and previous != version_id:
            state["productions"] = [v for v in state["productions"] if v != version_id] + [version_id]
        self._record(state, user, action, alias=alias, version=version_id, previous=previous, **extra)

    def promote(
        self, name: str, user: str, to: str = "production", require_gate: bool = False, force: bool = False
    ) -> tuple[Version, str | None]:
        """Point alias ``to`` at the version ``name`` names; returns it and the version it replaced.
        ``require_gate`` (a person's promote: the CLI, the web): production only for a version whose
        gate passed against the production it replaces, unless ``force``d, which the history keeps.
        A version the alias names already changes nothing and records nothing (returned as its own previous)."""
        with self.locked():
            version = self.find(name)
            if to not in ALIASES:
                raise ModelStoreError(f"{to!r} is not an alias: {' or '.join(ALIASES)}")
            state = self.state()
            previous = state["aliases"].get(to)
            if previous == version.id:
                return version, previous
            why_not = gate_problem(version, previous) if require_gate and to == "production" else None
            if why_not is not None and not force:
                raise GateRequired(
                    why_not,
                    cli=f": run edge-inspect model gate {version.short}, or promote with --force",
                    web=": run its gate (Run gate), or promote it anyway, confirming the override (force)",
                )
            extra = {"forced": why_not} if why_not is not None else {}
            if require_gate and to == "production" and why_not is None and previous not in (None, version.id):
                extra = {"gate": f"passed against {previous[:12]} at {version.info['gate']['at']}"}
            self._point(state, to, version.id, user, "promote", **extra)
        return version, previous

    def set_gate(self, version_id: str, report: dict[str, Any]) -> Version:
        """Keep a gate's report in the version's record (``version.json``, ``gate``): the bundle's files
        stay as they are (the version's id hashes them, not version.json)."""
        with self.locked():
            version = self.find(version_id)
            info = {**version.info, "gate": report}
            version.path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            try:
                write_durably(version.path / VERSION_FILE, (json.dumps(info, indent=2) + "\n").encode())
                (version.path / VERSION_FILE).chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            finally:
                _set_read_only(version.path)
            self._record(self.state(), report.get("by", "?"), "gate", version=version.id,
                         against=report.get("against"), passed=bool(report.get("passed")))  # fmt: skip
        return self._read_version(version.path)

    def rollback(self, user: str, to: str | None = None, only_from: str | None = None) -> tuple[Version, str]:
        """Production back to the production before it (the last known good); returns it and the one
        it replaced. Productions removed from the store since are passed over. ``to``: back to that
        version (one a station ran) instead; ``only_from``: only while production is still that version
        (a station's automatic rollback must not undo a promote that came after the one it judged)."""
        with self.locked():
            state = self.state()
            current = state["aliases"].get("production")
            if current is None:
                raise ModelStoreError(f"no version is production in {self.folder}: nothing to roll back")
            if only_from is not None and current != only_from:
                raise ModelStoreError(f"production is {current[:12]} now, not {only_from[:12]}: left as it is")
            earlier = [v for v in state["productions"] if v != current and (self.versions_dir / v).is_dir()]
            if to is not None:
                earlier = [v for v in earlier if v == to] or (
                    [to] if (self.versions_dir / to).is_dir() and to != current else []
                )
            if not earlier:
                raise ModelStoreError(
                    f"production {current[:12]} has no earlier production in the store to roll back to"
                )
            back = earlier[-1]
            state["aliases"]["production"] = back
            state["productions"] = [v for v in state["productions"] if v != current]
            self._record(state, user, "rollback", alias="production", version=back, previous=current)
            return self._read_version(self.versions_dir / back), current

    def remove(self, name: str, user: str) -> Version:
        """Delete a version no alias names."""
        if name in ALIASES:
            raise ModelStoreError(f"remove takes a version id, not the alias {name}")
        with self.locked():
            version = self.find(name)
            state = self.state()
            named = sorted(a for a, v in state["aliases"].items() if v == version.id)
            if named:
                raise ModelStoreError(
                    f"version {version.short} is {' and '.join(named)}: promote another version first"
                )
            doomed = self.versions_dir / f".removing-{version.id}-{os.getpid()}"
            os.rename(version.path, doomed)  # gone from the store at once, even if deleting is cut short
            _fsync(self.versions_dir)
            _set_writable(doomed)
            shutil.rmtree(doomed)
            state["productions"] = [v for v in state["productions"] if v != version.id]
            self._record(state, user, "remove", version=version.id)
        return version


def default_user() -> str:
    """Who ran the command, for the store's history: $USER, else the login name, else the uid."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if user:
        return user
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.getuid()}"


__all__ = [
    "ALIASES",
    "Added",
    "GateRequired",
    "gate_problem",
    "ModelStore",
    "ModelStoreError",
    "Version",
    "default_user",
    "looks_like_version",
]
