"""An experiment's definition, validated at write time; the variants' overrides are placement rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from app.placements.schemas import MAX_N, Boost, Diversity, Filters, Name, Pin, Rotation, Strict

Strategy = Literal["hybrid", "cf", "content", "popularity"]
Metric = Literal["conversion", "revenue", "ctr"]
Status = Literal["scheduled", "running", "stopped", "ended"]
VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"


class Overrides(Strict):
    """Placement fields replaced for this variant (`kind` is the placement's), plus the scoring."""

    n: int | None = Field(default=None, ge=1, le=MAX_N)
    filters: Filters | None = None
    boosts: list[Boost] | None = Field(default=None, max_length=20)
    pins: list[Pin] | None = Field(default=None, max_length=20)
    diversity: Diversity | None = None
    rotation: Rotation | None = None
    alpha: float | None = Field(default=None, ge=0, le=1, description="CF weight of the hybrid (1: CF only).")
    strategy: Strategy | None = Field(
        default=None, description="hybrid (the shop's blend, or `alpha`), cf, content, or popularity.")


MIN_SHARE = 0.001
"""The smallest share of shoppers a variant may be given."""


class Variant(Strict):
    name: Annotated[str, StringConstraints(pattern=VARIANT_NAME)]
    weight: float = Field(gt=0, le=1e6, description="Relative share of shoppers.")
    overrides: Overrides = Field(default_factory=Overrides)


class ExperimentIn(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    placement: Name
    variants: list[Variant] = Field(min_length=2, max_length=10, description="The first is the control.")
    primary_metric: Metric = "conversion"
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [v.name for v in self.variants]
        if len(set(names)) < len(names):
            raise ValueError("two variants share a name")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (e.g. 2026-12-05T00:00:00Z)")
        if self.end <= self.start:
            raise ValueError("end is not after start")
        total = sum(v.weight for v in self.variants)
        small = [v.name for v in self.variants if v.weight < MIN_SHARE * total]
        if small:  # such an arm gets hardly anyone: no result, and a sample-ratio test without meaning
            raise ValueError(f"variants {small} would get under {MIN_SHARE:.1%} of the shoppers; "
                             f"give every variant at least that share of the weights")
        return self


class ExperimentOut(ExperimentIn):
    id: int
    status: Status
    stopped_at: datetime | None
    created_at: datetime


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]

