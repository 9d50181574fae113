from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import Id


class Value(BaseModel):
    user_id: str
    horizon_days: float
    expected_purchases: float = Field(ge=0, description="Expected orders (purchase days) within the horizon.")
    expected_revenue: float = Field(
        ge=0, description="Expected money spent within the horizon: price × quantity per line, else price."
    )
    p_alive: float = Field(ge=0, le=1, description="Probability the shopper is still a customer (BG/NBD).")
    percentile: float | None = Field(description="Share of customers with an expected revenue at or below this one.")
    scored: bool = Field(description="False: no purchase before the last rebuild; given the mean of new customers.")
    model_version: str


class ValueBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[Id] = Field(min_length=1, max_length=10_000)


class ValueBatchOut(BaseModel):
    horizon_days: float
    model_version: str
    values: list[Value]


class ValueAudienceMember(BaseModel):
    user_id: str
    expected_revenue: float


class ValueAudienceOut(BaseModel):
    target: str = "value"
    horizon_days: float
    model_version: str
    users: list[ValueAudienceMember]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
