"""The station's config file while the daemon runs: every version kept in the log, edits made on
disk detected (never silently overwritten), saves and rollbacks from the setup pages validated by
the same schema as `config validate` and applied between inspections without a restart
(docs/setup.md)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..camera.genicam_features import FeatureError
from ..config import StationConfig, config_from_bytes, problem_at
from ..config.yaml_loader import read_limited
from ..durable import write_durably
from ..logbook import config_versions

if TYPE_CHECKING:
    from .ports import KeeperPort

log = logging.getLogger(__name__)

# What a running station takes over at once; a change anywhere else is saved and waits for a restart.
LIVE_KEYS = ("recipes", "triggers.recipe", "web.users")


def changed_keys(old: StationConfig, new: StationConfig) -> list[str]:
    """The sections (``recipes``) or section.keys (``plc.port``) that differ between two configs."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    keys = []
    for section in sorted(set(a) | set(b)):
        before, after = a.get(section), b.get(section)
        if before == after or section == "camera" and a.get("cameras") and b.get("cameras"):
            continue  # with cameras: given, camera is a copy of the first of them
        if isinstance(before, dict) and isinstance(after, dict):
            keys += [f"{section}.{k}" for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        else:
            keys.append(section)
    return keys


def live_part(running: StationConfig, new: StationConfig, with_recipes: bool = True) -> StationConfig:
    """``running`` with the keys of LIVE_KEYS taken from ``new`` (which passed every check); the
    recipes stay the running ones when not ``with_recipes`` (they look at a camera not running yet)."""
    return running.model_copy(
        update={
            "recipes": new.recipes if with_recipes else running.recipes,
            "triggers": running.triggers.model_copy(update={"recipe": new.triggers.recipe}),
            "web": running.web.model_copy(update={"users": new.web.users}),
        }
    )


class ConflictError(Exception):
    """The file on disk is not the version the change was made from; one line for the user."""


class SaveError(OSError):
    """The file could not be written (permissions, disk); one line for the user."""


@dataclass
class SaveResult:
    version_id: int
    sha256: str
    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class ConfigKeeper:
    """One per station started from a file (attached by daemon.py). Blocking file and log work runs in
    worker threads; the file on disk is looked at every ``disk_check_s``."""

    def __init__(self, station: KeeperPort, path: Path, disk_check_s: float = 2.0):
        self.station, self.path, self.disk_check_s = station, path, disk_check_s
        self.disk_sha256: str | None = None  # the file on disk, when it differs from the running config
        self.restart_needed: list[str] = []
        self._stat: tuple | None = None
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task | None = None

    # -- attachment (station.core.Attachment) ----------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.boot)
        self._watch = asyncio.create_task(self._watch_disk(), name="config-keeper")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)

    def status(self) -> dict:
        """The keys of the station's status this keeper fills in."""
        return {
            "config_on_disk": self.disk_sha256[:12] if self.disk_sha256 else None,
            "restart_needed": list(self.restart_needed),
        }

    async def _watch_disk(self) -> None:
        while True:
            await self._check_config_on_disk()
            await asyncio.sleep(self.disk_check_s)

    async def _check_config_on_disk(self) -> None:
        """An edit of the station file on disk is shown (alarm, status), never applied on its own."""
        if self.saving:
            return
        try:
            disk = await asyncio.to_thread(self.check_disk)
        except Exception:
            log.warning("config: could not look at %s", self.path, exc_info=True)
            return
        self.disk_sha256 = disk  # on the loop, with the alarm: the status never shows one without the other
        if disk is not None:
            self.station.raise_alarm(
                "config_changed",
                f"{self.path} was changed on disk ({disk[:12]}); not applied — apply or discard it on the setup page",
            )
        else:
            self.station.clear_alarm("config_changed")

    @property
    def saving(self) -> bool:
        return self._lock.locked()

    # -- blocking helpers (worker threads) -----------------------------------------------------------
    def _signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def read(self) -> tuple[str, str]:
        """The file's text and sha256."""
        raw = read_limited(self.path)
        return raw.decode("utf-8", errors="replace"), sha256_of(raw)

    def boot(self) -> None:
        """Keep the file the daemon starts with as a version, when it is not the latest one already
        (then it was edited while the daemon was stopped)."""
        text, sha = self.read()
        last = config_versions.latest(self.station.store)
        if last is None or last.sha256 != sha:
            config_versions.record(
                self.station.store,
                text,
                sha,
                "edge-inspect",
                "boot" if last is None else "disk",
                "" if last is None else "changed on disk while the daemon was stopped",
            )
        self._stat = self._signature()

    def check_disk(self) -> str | None:
        """Look at the file (cheap when unchanged); the on-disk sha256 when it differs from the running config
        (a worker thread: the caller stores it on the loop, beside the alarm)."""
        signature = self._signature()
        if signature == self._stat:
            return self.disk_sha256
        self._stat = signature
        try:
            _, sha = self.read()
        except OSError:
            sha = None  # being replaced, or removed: looked at again at the next check
            self._stat = None
        return sha if sha != self.station.config_sha256 else None

    # -- changes (on the loop) -------------------------------------------------------------------------
    async def save(
        self, text: str, author: str, source: str = "web", comment: str = "", base_sha256: str | None = None
    ) -> SaveResult:
        """Validate ``text`` as the station file (ConfigError with file:line problems), write it, keep it
        as a version and apply what can be applied live. ``base_sha256``: the version the change was
        made from; ConflictError when the file on disk is another one."""
        async with self._lock:
            _, disk_sha = await asyncio.to_thread(self.read)
            if base_sha256 is not None and disk_sha != base_sha256:
                raise ConflictError(
                    f"{self.path} changed on disk since this version was opened "
                    f"(now {disk_sha[:12]}); reload and make the change again"
                )
            raw = text.encode()
            config, sha = await asyncio.to_thread(config_from_bytes, raw, self.path)
            try:  # a GenICam camera's settings against the running camera's own feature tree
                await self.station.check_cameras(config)
            except FeatureError as err:
                raise problem_at(raw, self.path, err.key, str(err)) from None
            try:
                await asyncio.to_thread(write_durably, self.path, raw)
            except OSError as err:
                raise SaveError(f"cannot write {self.path}: {err.strerror or err}") from None
            version_id = await asyncio.to_thread(
                config_versions.record, self.station.store, text, sha, author, source, comment
            )
            applied, self.restart_needed = await self.station.apply_config(config, sha)
            self._stat, self.disk_sha256 = await asyncio.to_thread(self._signature), None
            log.info(
                "config %s saved by %s (%s): applied %s; restart needed for %s",
                sha[:12],
                author,
                source,
                applied or "nothing",
                self.restart_needed or "nothing",
            )
            return SaveResult(version_id, sha, applied, self.restart_needed)

    async def rollback(self, version_id: int, author: str) -> SaveResult:
        """Make an earlier version the current one again (a new version, source 'rollback')."""
        version = await asyncio.to_thread(config_versions.get, self.station.store, version_id)
        if version is None:
            raise LookupError(f"no config version {version_id}")
        _, disk_sha = await asyncio.to_thread(self.read)
        if disk_sha != self.station.config_sha256:  # an edit on disk is never overwritten unseen
            raise ConflictError(
                f"{self.path} was changed on disk and that change is not applied; "
                "apply or discard it first, then roll back"
            )
        return await self.save(
            version.yaml, author, "rollback", f"rollback to version {version_id}", base_sha256=disk_sha
        )

    async def apply_disk(self, author: str) -> SaveResult:
        """Take over the file as edited on disk (validated first)."""
        text, sha = await asyncio.to_thread(self.read)
        return await self.save(text, author, "disk", "edited on disk, applied from the setup page", base_sha256=sha)

    async def discard_disk(self, author: str) -> SaveResult:
        """Write the running version back over the file edited on disk."""
        version = await asyncio.to_thread(config_versions.with_sha256, self.station.store, self.station.config_sha256)
        if version is None:
            raise LookupError("the running config is not among the kept versions")
        text, sha = await asyncio.to_thread(self.read)
        if sha != self.station.config_sha256:  # the discarded edit stays readable in the history
            await asyncio.to_thread(
                config_versions.record,
                self.station.store,
                text,
                sha,
                author,
                "disk",
                "edited on disk, discarded from the setup page (never applied)",
            )
        return await self.save(version.yaml, author, "web", "edit on disk discarded", base_sha256=sha)
