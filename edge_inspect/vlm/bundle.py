"""Model bundle: a folder with ``manifest.json``, the ONNX graphs and ``tokenizer.json``.

Loading verifies every file listed in the manifest (presence, size, sha256) before anything is
run, so a truncated copy or a swapped graph is refused with a message that names the file.
The format is documented in ``models/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .manifest import FORMAT, FORMAT_VERSION, GRAPHS, MANIFEST, Manifest, ManifestError, Text, Tokens, parse_manifest
from .preprocess import ImageSettings
from .prompt import PromptSettings

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "GRAPHS",
    "MANIFEST",
    "Bundle",
    "BundleError",
    "TextShape",
    "TokenIds",
    "load_bundle_files",
    "read_manifest",
    "sha256_file",
    "verify_files",
]

log = logging.getLogger(__name__)

TokenIds = Tokens  # the names this module used before the schema moved to manifest.py
TextShape = Text


class BundleError(UserError):
    """A bundle that cannot be used; the message names the file and the problem."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]  # the JSON as written (keeps keys this runtime does not know)
    info: Manifest  # the same, checked against the schema
    image: ImageSettings
    prompt: PromptSettings
    tokens: Tokens
    text: Text

    def graph_path(self, name: str) -> Path:
        return self.path / self.info.graphs[name].file

    def precision(self, name: str) -> str:
        return self.info.graphs[name].precision

    @property
    def sha256(self) -> str:
        """Identity of the bundle: the hash of its manifest (which holds every file's hash)."""
        return sha256_file(self.path / MANIFEST)


def verify_files(path: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is there, with its size and sha256."""
    for name, entry in manifest.files.items():
        target = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{MANIFEST}: file entry {name!r} points outside the bundle")
        if not target.is_file():
            raise BundleError(f"{target}: missing (listed in {MANIFEST})")
        size = target.stat().st_size
        if size != entry.bytes:
            problem = "truncated" if size < entry.bytes else "wrong size"
            raise BundleError(f"{target}: {problem}: {size} bytes, manifest says {entry.bytes}")
        if sha256_file(target) != entry.sha256:
            raise BundleError(f"{target}: sha256 mismatch: the file is not the one the bundle was built with")


def read_manifest(path: Path) -> tuple[dict[str, Any], Manifest]:
    """The manifest of bundle folder ``path``: its JSON and the checked schema object."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle folder")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{manifest_path}: not valid JSON ({err})") from None
    try:
        return raw, parse_manifest(raw)
    except ManifestError as err:
        raise BundleError(f"{manifest_path}: {err}") from None


def load_bundle_files(path: str | Path, verify: bool = True) -> Bundle:
    """Read and verify a bundle folder; raises BundleError naming the bad file."""
    path = Path(path)
    raw, manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    log.debug("bundle %s: manifest ok, %d files verified=%s", path, len(manifest.files), verify)
    return Bundle(
        path=path,
        manifest=raw,
        info=manifest,
        image=manifest.preprocess.settings(),
        prompt=manifest.prompt.settings(),
        tokens=manifest.tokens,
        text=manifest.text,
    )
