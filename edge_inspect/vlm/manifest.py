"""The bundle manifest (``manifest.json``), defined once: the export tools write it with these
models and the runtime reads it with them. The format is documented in ``models/README.md``.

Version 1 is the only version; extra keys are kept (a newer writer may add information), missing
or wrongly typed ones are refused with the dotted key that is wrong.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .preprocess import ImageSettings
from .prompt import PromptSettings

FORMAT = "edge-inspect-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPHS = ("vision", "embed", "decoder")
# Graphs a bundle may add: decoder_step decodes one token per row with the K/V cache updated in
# place (ONNX Runtime contrib ops, CPU); without it the decoder graph runs every step.
STEP_GRAPH = "decoder_step"
OPTIONAL_GRAPHS = (STEP_GRAPH,)
PRECISIONS = ("fp32", "fp16", "int8", "int4")


class ManifestError(ValueError):
    """A manifest that does not follow the schema; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class FileEntry(_Section):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Source(_Section):
    checkpoint: str
    model_type: str
    architecture: str
    config_sha256: str
    parameters: int = Field(ge=0)
    transformers: str
    torch: str


class Preprocess(_Section):
    crop_size: int = Field(gt=0)
    patch_size: int = Field(gt=0)
    max_crops: int = Field(ge=1)
    overlap_margins: tuple[int, int]
    pooling_size: tuple[int, int]
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    do_rescale: bool
    rescale_factor: float = Field(gt=0)
    do_normalize: bool
    do_convert_rgb: bool
    resample: Literal["bilinear"] = "bilinear"

    @model_validator(mode="after")
    def _geometry(self) -> Preprocess:
        problem = geometry_problem(self.crop_size, self.patch_size, self.overlap_margins, self.pooling_size)
        if problem:
            raise ValueError(problem)
        if any(s == 0 for s in self.image_std):
            raise ValueError("image_std must not contain 0")
        return self

    def settings(self) -> ImageSettings:
        return ImageSettings(
            **self.model_dump(
                exclude={"resample"}, exclude_unset=False, include=set(ImageSettings.__dataclass_fields__)
            )
        )

    @classmethod
    def from_settings(cls, s: ImageSettings) -> Preprocess:
        return cls(**{name: getattr(s, name) for name in ImageSettings.__dataclass_fields__}, resample="bilinear")


def geometry_problem(
    crop_size: int, patch_size: int, overlap_margins: tuple[int, int], pooling_size: tuple[int, int]
) -> str | None:
    """Why these crop settings cannot tile an image (None when they can)."""
    if crop_size % patch_size:
        return f"crop_size {crop_size} is not a multiple of patch_size {patch_size}"
    patches = crop_size // patch_size
    if min(overlap_margins) < 0:
        return f"overlap_margins {list(overlap_margins)} must not be negative"
    if sum(overlap_margins) >= patches:
        return (
            f"overlap_margins {list(overlap_margins)} leave no window in a {patches}-patch crop "
            f"({crop_size} px / {patch_size} px patches): their sum must be below {patches}"
        )
    if min(pooling_size) < 1:
        return f"pooling_size {list(pooling_size)} must be at least 1"
    return None


class Prompt(_Section):
    chat_template: str
    bos_token: str
    image_placeholder: str
    image_use_col_tokens: bool
    use_single_crop_col_tokens: bool | None = None
    use_single_crop_start_token: bool

    def settings(self) -> PromptSettings:
        return PromptSettings(**self.model_dump(include=set(PromptSettings.__dataclass_fields__)))


class Tokens(_Section):
    bos: int = Field(ge=0)
    eos: tuple[int, ...] = Field(min_length=1)
    image_patch: int = Field(ge=0)
    yes: tuple[int, ...] = Field(min_length=1)
    no: tuple[int, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _disjoint(self) -> Tokens:
        if set(self.yes) & set(self.no):
            raise ValueError(f"yes {list(self.yes)} and no {list(self.no)} share token ids")
        return self


class Text(_Section):
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_positions: int = Field(gt=0)


class Graph(_Section):
    file: str
    precision: Literal[PRECISIONS] = "fp32"  # type: ignore[valid-type]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    kept_full_precision: tuple[str, ...] = ()


class Manifest(_Section):
    format: Literal[FORMAT]  # type: ignore[valid-type]
    format_version: Literal[FORMAT_VERSION]  # type: ignore[valid-type]
    created: str
    source: Source
    preprocess: Preprocess
    prompt: Prompt
    tokens: Tokens
    text: Text
    opset: int
    graphs: dict[str, Graph]
    files: dict[str, FileEntry] = Field(min_length=1)
    quantization: dict[str, Any] | None = None

    @field_validator("files", mode="before")
    @classmethod
    def _inside(cls, files: Any) -> Any:
        for name in files if isinstance(files, dict) else ():
            if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts or "\\" in name:
                raise ValueError(f"file entry {name!r} points outside the bundle")
        return files

    @field_validator("graphs")
    @classmethod
    def _three_graphs(cls, graphs: dict[str, Graph]) -> dict[str, Graph]:
        missing = [g for g in GRAPHS if g not in graphs]
        if missing:
            raise ValueError(f"graphs {missing} missing")
        return graphs

    @model_validator(mode="after")
    def _files_listed(self) -> Manifest:
        for name, graph in self.graphs.items():
            if graph.file not in self.files:
                raise ValueError(f"graph '{name}' file {graph.file!r} is not listed in 'files'")
        if "tokenizer.json" not in self.files:
            raise ValueError("tokenizer.json is not listed in 'files'")
        bad = [tid for tid in (*self.tokens.yes, *self.tokens.no) if tid >= self.text.vocab_size]
        if bad:
            raise ValueError(f"yes/no token ids {bad} are outside the LM head's {self.text.vocab_size} entries")
        return self

    def to_json(self) -> str:
        """The manifest file's text: keys that were given (defaults left implicit), extras kept."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2) + "\n"


def parse_manifest(data: Any) -> Manifest:
    """A Manifest from the decoded JSON; ManifestError naming the first wrong key."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"not an {FORMAT} manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"format_version {data.get('format_version')} is not supported (this runtime reads {FORMAT_VERSION})"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            raise ManifestError(f"missing key '{where}'") from None
        raise ManifestError(f"bad setting '{where}': {message}" if where else message) from None
