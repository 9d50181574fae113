from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.triggers.kinds import Kind

TRIGGER_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"
DAY = 86_400


class CartConditions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrowseConditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_views: int = Field(default=3, ge=1, le=1000, description="Views in one category that arm the trigger.")
    category: str | None = Field(default=None, min_length=1, max_length=256, description="Only this category.")
    window_seconds: int = Field(
        default=DAY, ge=60, le=30 * DAY,
        description="Views are counted while the gap since the previous one stays below this.",
    )


class PropensityConditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        default="purchase", pattern=r"^(purchase|churn|purchase:.{1,200})$",
        description="The propensity target whose `high` tier is watched (purchase, churn, purchase:<category>).",
    )


class StockConditions(BaseModel):
    model_config = ConfigDict(extra="forbid")


CONDITIONS: dict[str, type[BaseModel]] = {
    "cart_abandoned": CartConditions, "browse_abandoned": BrowseConditions,
    "propensity_crossed": PropensityConditions, "back_in_stock": StockConditions,
}


class RecommendationsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    placement: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                                  description="A `user` placement whose rules shape the items.")
    n: int = Field(default=5, ge=1, le=50)


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    delay_seconds: int = Field(ge=0, le=30 * DAY, description="How long after the behaviour it fires.")
    cooldown_seconds: int = Field(
        default=DAY, ge=0, le=365 * DAY, description="At most one firing per shopper within this."
    )
    conditions: dict[str, Any] = Field(default_factory=dict, description="Kind-specific; see the API guide.")
    recommendations: RecommendationsSpec = Field(default_factory=RecommendationsSpec)

    @model_validator(mode="after")
    def _conditions_of_kind(self) -> TriggerIn:
        try:
            checked = CONDITIONS[self.kind].model_validate(self.conditions)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "conditions"
            raise ValueError(f"conditions.{where} for {self.kind}: {first['msg']}") from None
        self.conditions = checked.model_dump(exclude_none=True)
        return self


class TriggerOut(TriggerIn):
    name: str
    created_at: datetime
    updated_at: datetime


class TriggerList(BaseModel):
    triggers: list[TriggerOut]




class ShopperCampaigns(BaseModel):
    """What triggers and webhooks keep about one shopper (GDPR export; erasure removes all of it)."""

    pending_triggers: list[dict[str, Any]] = Field(default_factory=list, description="Armed, not fired yet.")
    trigger_fires: list[dict[str, Any]] = Field(default_factory=list, description="Last firing per trigger.")
    high_tiers: list[str] = Field(default_factory=list, description="Targets whose high tier they were in.")
    webhook_deliveries: list[dict[str, Any]] = Field(
        default_factory=list, description="Deliveries about them, with the body sent."
    )
