"""The JSON bodies of the REST endpoints that change something, as strict schemas: a boolean is not a
number, a quoted number is not a number, a number is not text, and unknown keys are refused — the
same rule as station.yaml (config) and the fleet messages. A body that does not fit is a 400 naming
the key."""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .context import BadRequest

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Point = Annotated[list[Fraction], Field(min_length=2, max_length=2)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class DispositionBody(Body):
    disposition: str = Field(max_length=40)
    comment: str = Field(default="", max_length=2000)


class CorrectionsBody(Body):
    check_idx: int = Field(ge=0, le=1000)
    add: list[Point] = Field(default_factory=list, max_length=200)
    remove: list[Point] = Field(default_factory=list, max_length=200)


class ConfigSaveBody(Body):
    base_sha256: str = Field(max_length=64)
    yaml: str | None = None
    recipes: list[dict] | None = None
    comment: str = Field(default="", max_length=500)


class DiskBody(Body):
    action: str = Field(max_length=20)


B = TypeVar("B", bound=Body)


def parse(model: type[B], body: dict) -> B:
    """``body`` as ``model``; BadRequest naming the first key that does not fit."""
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{key}: {first['msg']}") from None
