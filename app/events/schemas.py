from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator

from app.common.types import ID_PATTERN, BoundedJSON, Id

RecommendationId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
EventType = Literal[
    "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "like", "dislike", "bookmark"
]


class EventIn(BaseModel):
    """One shopper action. Unknown fields are rejected so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: Id | None = Field(
        default=None, description="De-duplication key; an event whose id was seen before is not stored again."
    )
    user_id: Id
    item_id: Id | None = Field(default=None, description="Required for every type but an order-level purchase.")
    type: EventType
    value: float | None = Field(default=None, ge=-1e6, le=1e6, description="Rating (1-5 usual) or quantity.")
    price: float | None = Field(default=None, ge=0, le=1e9)
    timestamp: datetime | None = Field(
        default=None,
        description="ISO-8601 (UTC when no offset) or epoch seconds. Default: now. "
        "Rejected when more than SHOPMIND_MAX_FUTURE_SECONDS (default 300) in the future or before 2000-01-01.",
    )
    session_id: Id | None = None
    recommendation_id: RecommendationId | None = Field(
        default=None, description="The recommendation_id of the list the shopper acted on (attribution)."
    )
    properties: BoundedJSON | None = Field(default=None, description="Free-form JSON, ≤ 8 KB, ≤ 4 levels.")

    @model_validator(mode="after")
    def _item_needed(self) -> EventIn:
        if self.item_id is None and self.type != "purchase":
            raise ValueError(f"item_id is required for `{self.type}` events")
        if self.type == "rating" and self.value is None:
            raise ValueError("rating events need a `value`")
        return self


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Validated one by one in the service so one bad event never sinks its batch.
    events: Annotated[
        list[dict[str, Any]],
        WithJsonSchema(
            {"type": "array", "items": EventIn.model_json_schema(), "minItems": 1, "maxItems": 10_000}
        ),
    ] = Field(description="1 to 10,000 events.")


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the request's `events` list.")
    event_id: str | None = None
    error: str


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    errors: list[RejectedEvent] = Field(default_factory=list)
    duplicate_event_ids: list[str] = Field(default_factory=list)
    realtime_updated: bool = Field(
        description="False when Redis was unreachable: the events are stored, real-time state catches up "
        "at the next rebuild."
    )
