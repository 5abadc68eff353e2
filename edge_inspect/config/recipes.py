"""Recipes and their checks (point, count, yes/no) with ROI polygons."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Polygon, Strict
from .devices import camera_name


def _check_polygon(roi: Polygon | None) -> Polygon | None:
    if roi is None:
        return None
    if len(roi) < 3:
        raise ValueError("an ROI polygon needs at least 3 points")
    if len(roi) > 64:
        raise ValueError(f"an ROI polygon has at most 64 points, not {len(roi)}")
    for x, y in roi:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"ROI point ({x}, {y}) lies outside the frame (coordinates are fractions 0..1)")
    area = abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(roi, roi[1:] + roi[:1], strict=True))) / 2
    if area < 1e-6:
        raise ValueError("the ROI polygon encloses no area (its points are collinear or repeated)")
    return roi


class CheckBase(Strict):
    name: str = Field(min_length=1, max_length=40)
    roi: Polygon | None = Field(default=None, description="polygon of (x, y) fractions of the frame")
    crop: bool = Field(default=False, description="run the model on the ROI's bounding box only")
    view: str | None = Field(
        default=None,
        description="the camera (a name of cameras:) whose frame the check looks at; unset: the first camera",
    )

    @field_validator("view")
    @classmethod
    def _view_name(cls, view: str | None) -> str | None:
        return None if view is None else camera_name(view)

    @field_validator("roi")
    @classmethod
    def _roi_inside_frame(cls, roi: Polygon | None) -> Polygon | None:
        return _check_polygon(roi)

    @model_validator(mode="after")
    def _crop_needs_roi(self):
        if self.crop and self.roi is None:
            raise ValueError("crop: true needs an roi")
        return self


# Points decoded beyond the first count that fails, so the overlay shows a crowd of defects as a crowd.
OVERLAY_MARGIN = 2


class PointingBase(CheckBase):
    prompt: str = Field(min_length=1, max_length=1000)
    max_points: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="stop decoding the answer after this many points; default: the first failing count "
        f"+ {OVERLAY_MARGIN} without an roi, no limit with one (points outside it do not count)",
    )

    @property
    def pass_limit(self) -> int:
        """The most points that can still pass."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _max_points_above_pass(self):
        if self.max_points is not None and self.max_points <= self.pass_limit:
            raise ValueError(f"max_points ({self.max_points}) must be more than could pass ({self.pass_limit})")
        return self

    def decode_cap(self) -> int | None:
        """Points to decode at most: ``max_points``, else (without an roi) the first failing count plus
        OVERLAY_MARGIN. None: no limit (with an roi, points outside it do not count)."""
        if self.max_points is not None:
            return self.max_points
        return None if self.roi is not None else self.pass_limit + 1 + OVERLAY_MARGIN


class PointCheck(PointingBase):
    kind: Literal["point"]
    min: int = Field(default=0, ge=0, le=1000)
    max: int = Field(default=0, ge=0, le=1000)

    @model_validator(mode="after")
    def _range(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def pass_limit(self) -> int:
        return self.max


class CountCheck(PointingBase):
    kind: Literal["count"]
    expected: int = Field(ge=0, le=1000)

    @property
    def pass_limit(self) -> int:
        return self.expected


class QACheck(CheckBase):
    kind: Literal["qa"]
    question: str = Field(min_length=1, max_length=1000)
    expect: Literal["yes", "no"]
    min_margin: float = Field(default=0.2, ge=0.0, le=1.0)
    # below this probability mass on the yes/no tokens the model did not understand the question:
    # the answer is uncertain (on_uncertain), however large its margin
    min_mass: float = Field(default=0.5, ge=0.0, le=1.0)
    on_uncertain: Literal["fail", "error", "pass"] = "fail"


Check = Annotated[PointCheck | CountCheck | QACheck, Field(discriminator="kind")]


class Recipe(Strict):
    number: int = Field(ge=0, le=65535)
    name: str = Field(min_length=1, max_length=200)
    checks: list[Check] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique within a recipe: {', '.join(dupes)}")
        return self

    def sha256(self) -> str:
        """The recipe's version: a hash of its settings (not of the file's spelling or comments), so
        an inspection's log row tells which checks, prompts, limits and ROIs it ran."""
        settings = self.model_dump(mode="json")
        for check in settings["checks"]:  # unset, they are not part of the version (recipes keep their hash)
            for key in ("max_points", "view"):
                if check.get(key, 0) is None:
                    del check[key]
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()
