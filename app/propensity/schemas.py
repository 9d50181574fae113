from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import Id
from app.value.schemas import ValueAudienceOut as ValueAudienceOut  # GET /v1/audiences?target=value answers with it


class FactorOut(BaseModel):
    feature: str
    text: str = Field(description="In a marketer's words, e.g. '3 cart additions in the last 7 days'.")
    direction: str = Field(description="up: raises the probability; down: lowers it.")
    impact: float = Field(description="Change in probability against a typical shopper.")
    value: float


class Score(BaseModel):
    user_id: str
    probability: float = Field(ge=0, le=1)
    percentile: float | None = Field(description="Share of shoppers scored at or below this one.")
    tier: str = Field(description="high / medium / low, relative to the base rate.")
    top_factors: list[FactorOut] = Field(
        default_factory=list,
        description="What drives the score most, for the 20,000 likeliest shoppers per target (all of them in "
        "smaller shops); empty for the others.",
    )
    scored: bool = Field(description="False: unknown or newer than the last rebuild, given the base rate.")


class PropensityOut(Score):
    target: str
    horizon_days: float
    model_version: str


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[Id] = Field(min_length=1, max_length=10_000)
    target: str = Field(
        default="purchase", max_length=300, description="purchase, churn or purchase:<category>"
    )


class BatchOut(BaseModel):
    target: str
    horizon_days: float
    model_version: str
    scores: list[Score]


class AudienceMember(BaseModel):
    user_id: str
    probability: float


class AudienceOut(BaseModel):
    target: str
    horizon_days: float
    model_version: str
    users: list[AudienceMember]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class LookalikeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[Id] = Field(min_length=1, max_length=1000, description="The seed audience.")
    n: int = Field(default=100, ge=1, le=10_000)


class LookalikeOut(BaseModel):
    model_version: str
    seeds_found: int
    users: list[dict[str, Any]]


class ItemAudienceMember(BaseModel):
    user_id: str
    score: float = Field(description="Predicted affinity for the item, scaled so its strongest shopper is 1.")
    probability: float | None = Field(
        description="The shopper's purchase probability over `horizon_days` (as GET /v1/audiences?target=purchase);"
        " null while the shop has no purchase model."
    )
    bought: bool = Field(description="Bought the item already (listed only with include_buyers=true).")


class ItemAudienceOut(BaseModel):
    item_id: str
    model_version: str
    include_buyers: bool
    probability_target: str = Field(description="The target of each member's `probability`.")
    horizon_days: float | None
    users: list[ItemAudienceMember]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
