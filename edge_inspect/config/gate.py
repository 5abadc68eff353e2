"""``model.gate``: what the acceptance gate runs a version on and how much worse than production it
may be (docs/model-lifecycle.md, "The gate"). Each tolerance is in the figure's own unit (a share,
0–1); a check is judged only where both versions have a figure for it."""

from __future__ import annotations

from pydantic import Field, field_validator

from .base import Strict

# The camera shifts the gate runs by default: as edge_inspect/evaluation/shifts.py SHIFT_SUITE, named
# here so that loading a station file does not load the evaluation (tests/config checks the two agree).
DEFAULT_SHIFTS = ("scale0.8", "scale1.2", "rot+5", "rot-5", "bright+30%", "bright-30%", "blur1.5")


class GateConfig(Strict):
    parts: int = Field(default=100, ge=1, le=100_000, description="generated parts (all five questions each)")
    shift_parts: int = Field(default=50, ge=0, le=100_000, description="parts per camera shift (0: no shift suite)")
    first_seed: int = Field(default=900_000, ge=0, le=2**31, description="the generated parts' first seed")
    shifts: list[str] = Field(default_factory=lambda: list(DEFAULT_SHIFTS), max_length=32)
    max_f1_drop: float = Field(default=0.01, ge=0.0, le=1.0, description="object-level F1, per check")
    max_count_drop: float = Field(default=0.01, ge=0.0, le=1.0, description="count exact, per check")
    max_yes_no_drop: float = Field(default=0.01, ge=0.0, le=1.0, description="yes/no accuracy, per check")
    max_false_call_rise: float = Field(default=0.005, ge=0.0, le=1.0, description="false-call rate per part")
    max_escape_rise: float = Field(default=0.005, ge=0.0, le=1.0, description="escape rate per part")
    min_corrected_fixed: float = Field(
        default=0.8, ge=0.0, le=1.0, description="share of the holdout's corrected cases the candidate must get right"
    )
    max_latency_ratio: float = Field(default=1.2, gt=0.0, le=100.0, description="p95 per part over production's")
    max_memory_ratio: float = Field(default=1.2, gt=0.0, le=100.0, description="the model's memory over production's")
    latency_parts: int = Field(default=30, ge=1, le=10_000, description="parts timed, alternating the two versions")
    latency_repeats: int = Field(default=3, ge=1, le=100, description="times per part and version; the fastest counts")

    @field_validator("shifts")
    @classmethod
    def _known_shifts(cls, names: list[str]) -> list[str]:
        from ..evaluation.shifts import SHIFTS

        unknown = [n for n in names if n not in SHIFTS]
        if unknown:
            raise ValueError(f"unknown camera shift {', '.join(unknown)}; known: {', '.join(SHIFTS)}")
        if len(set(names)) != len(names):
            raise ValueError("a shift is named twice")
        return names
