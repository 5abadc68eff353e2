"""``unfamiliar``: the unfamiliar-frame guard (docs/model-lifecycle.md, "The unfamiliar-frame guard"):
what a frame far from the commissioning frames does to the part, and when the rate of such frames
raises the alarm ``unfamiliar_images``. The thresholds themselves live in the references
(``edge-inspect model reference``), calibrated from the commissioning frames."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict


class UnfamiliarGuard(Strict):
    enabled: bool = Field(default=True, description="score each frame where a reference exists (false: never)")
    action: Literal["error", "uncertain"] = Field(
        default="error",
        description="an unfamiliar view's checks: error (the part is ERROR), or uncertain (a passing check fails)",
    )
    alarm_window: int = Field(default=50, ge=1, le=100_000, description="the last this many parts count for the alarm")
    alarm_share: float = Field(
        default=0.1, gt=0.0, le=1.0, description="the alarm rises when more than this share of them were unfamiliar"
    )
