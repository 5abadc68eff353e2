"""Model bundle: a folder with ``manifest.json``, the ONNX graphs and ``tokenizer.json``.

Loading verifies every file listed in the manifest (presence, size, sha256) before anything is
run, so a truncated copy or a swapped graph is refused with a message that names the file.
The format is documented in ``models/README.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preprocess import ImageSettings
from .prompt import PromptSettings

FORMAT = "edge-inspect-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPHS = ("vision", "embed", "decoder")


class BundleError(Exception):
    """A bundle that cannot be used; the message names the file and the problem."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenIds:
    bos: int
    eos: tuple[int, ...]
    image_patch: int
    yes: tuple[int, ...]
    no: tuple[int, ...]


@dataclass(frozen=True)
class TextShape:
    hidden_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: dict[str, Any]
    image: ImageSettings
    prompt: PromptSettings
    tokens: TokenIds
    text: TextShape

    def graph_path(self, name: str) -> Path:
        return self.path / self.manifest["graphs"][name]["file"]

    def precision(self, name: str) -> str:
        return self.manifest["graphs"][name].get("precision", "fp32")

    @property
    def sha256(self) -> str:
        """Identity of the bundle: the hash of its manifest (which holds every file's hash)."""
        return sha256_file(self.path / MANIFEST)


def _require(manifest: dict, dotted: str) -> Any:
    node: Any = manifest
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise BundleError(f"{MANIFEST}: missing key '{dotted}'")
        node = node[key]
    return node


def verify_files(path: Path, manifest: dict) -> None:
    files = _require(manifest, "files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{MANIFEST}: 'files' must list the bundle's files")
    for name, entry in files.items():
        target = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{MANIFEST}: file entry {name!r} points outside the bundle")
        if not target.is_file():
            raise BundleError(f"{target}: missing (listed in {MANIFEST})")
        size = target.stat().st_size
        if size != entry.get("bytes"):
            problem = "truncated" if size < entry.get("bytes", 0) else "wrong size"
            raise BundleError(f"{target}: {problem}: {size} bytes, manifest says {entry.get('bytes')}")
        if sha256_file(target) != entry.get("sha256"):
            raise BundleError(f"{target}: sha256 mismatch: the file is not the one the bundle was built with")
    for graph in GRAPHS:
        graph_file = _require(manifest, f"graphs.{graph}.file")
        if graph_file not in files:
            raise BundleError(f"{MANIFEST}: graph '{graph}' file {graph_file!r} is not listed in 'files'")
    if "tokenizer.json" not in files:
        raise BundleError(f"{MANIFEST}: tokenizer.json is not listed in 'files'")


def read_manifest(path: Path) -> dict:
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle folder")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{manifest_path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: format_version {manifest.get('format_version')} is not supported "
            f"(this runtime reads {FORMAT_VERSION})"
        )
    return manifest


def load_bundle_files(path: str | Path, verify: bool = True) -> Bundle:
    """Read and verify a bundle folder; raises BundleError naming the bad file."""
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    try:
        v = _require(manifest, "preprocess")
        image = ImageSettings(
            crop_size=int(v["crop_size"]),
            patch_size=int(v["patch_size"]),
            max_crops=int(v["max_crops"]),
            overlap_margins=tuple(v["overlap_margins"]),
            pooling_size=tuple(v["pooling_size"]),
            image_mean=tuple(v["image_mean"]),
            image_std=tuple(v["image_std"]),
            do_rescale=bool(v["do_rescale"]),
            rescale_factor=float(v["rescale_factor"]),
            do_normalize=bool(v["do_normalize"]),
            do_convert_rgb=bool(v["do_convert_rgb"]),
        )
        p = _require(manifest, "prompt")
        prompt = PromptSettings(
            chat_template=p["chat_template"],
            bos_token=p["bos_token"],
            image_placeholder=p["image_placeholder"],
            image_use_col_tokens=bool(p["image_use_col_tokens"]),
            use_single_crop_col_tokens=p["use_single_crop_col_tokens"],
            use_single_crop_start_token=bool(p["use_single_crop_start_token"]),
        )
        t = _require(manifest, "tokens")
        tokens = TokenIds(
            bos=int(t["bos"]),
            eos=tuple(int(i) for i in t["eos"]),
            image_patch=int(t["image_patch"]),
            yes=tuple(int(i) for i in t["yes"]),
            no=tuple(int(i) for i in t["no"]),
        )
        d = _require(manifest, "text")
        text = TextShape(
            hidden_size=int(d["hidden_size"]),
            num_layers=int(d["num_layers"]),
            num_kv_heads=int(d["num_kv_heads"]),
            head_dim=int(d["head_dim"]),
            vocab_size=int(d["vocab_size"]),
            max_positions=int(d["max_positions"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{path / MANIFEST}: bad or missing setting {err}") from None
    return Bundle(path=path, manifest=manifest, image=image, prompt=prompt, tokens=tokens, text=text)
