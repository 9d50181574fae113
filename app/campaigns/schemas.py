from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import Id


class TargetAudience(BaseModel):
    """The shoppers most likely to act on a propensity target, best first."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(max_length=300, description="purchase, churn or purchase:<category>")
    min_probability: float = Field(default=0.0, ge=0, le=1)
    tier: Literal["high", "medium", "low"] | None = Field(default=None, description="Only shoppers in this tier.")
    limit: int = Field(default=100_000, ge=1, le=10_000_000, description="At most this many rows.")


class ListedAudience(BaseModel):
    """Shoppers named one by one (a CRM segment); unknown ones get the target's base rate."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[Id] = Field(min_length=1, max_length=100_000)
    target: str = Field(default="purchase", max_length=300, description="The probability reported per row.")


class ItemAudience(BaseModel):
    """Who will buy this item (as GET /v1/items/{item_id}/audience), best first."""

    model_config = ConfigDict(extra="forbid")

    item_id: Id
    min_score: float = Field(default=0.0, ge=0, le=1, description="Affinity at least (1 = the item's best).")
    include_buyers: bool = Field(default=False, description="Keep shoppers who bought it already.")
    limit: int = Field(default=100_000, ge=1, le=10_000_000, description="At most this many rows.")
    target: str = Field(default="purchase", max_length=300, description="The probability reported per row.")


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audience: TargetAudience | ListedAudience | ItemAudience
    n_items: int = Field(default=5, ge=1, le=50, description="Items per shopper.")
    placement: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                                  description="A `user` placement whose rules shape each shopper's items.")
    format: Literal["jsonl", "csv"] = "jsonl"
