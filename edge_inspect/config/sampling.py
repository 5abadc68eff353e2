"""``review_sampling``: which inspections go to the QA review queue beside the ones QA looks at anyway
(docs/log.md, "Sampling for review"), and how many at most. Reviewed, they become training data
(docs/model-lifecycle.md): the cases worth a person's look are the ones the model was least sure of."""

from __future__ import annotations

from pydantic import Field

from .base import Strict


class ReviewSampling(Strict):
    uncertain: bool = Field(default=True, description="a check the model was not sure of (reason 'uncertain: ...')")
    unfamiliar: bool = Field(
        default=True, description="a frame the unfamiliar-frame guard flagged ('unfamiliar image')"
    )
    low_margin: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="a yes/no answer whose margin is under this, however it was judged",
    )
    count_edge: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="a count that fails by at most this many points (3 or 5 where 4 are expected)",
    )
    shadow_disagreement: bool = Field(
        default=True, description="the shadow's verdict or a check's result differs from production's"
    )
    every_nth_pass: int = Field(default=0, ge=0, le=1_000_000, description="every Nth PASS (0: none)")
    per_hour: int = Field(default=20, ge=0, le=10_000, description="at most this many sampled in any hour")
    per_day: int = Field(default=200, ge=0, le=10_000, description="at most this many in any 24 hours")
