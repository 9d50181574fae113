from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Required

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, WithJsonSchema, with_config
from typing_extensions import TypedDict  # pydantic reads TypedDicts from typing only on Python ≥ 3.12

from app.common.types import ID_PATTERN, BoundedJSON, Id

RecommendationId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
EventType = Literal[
    "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "like", "dislike", "bookmark"
]

BROWSER_EVENT_TYPES: frozenset[str] = frozenset(
    {"view", "click", "add_to_cart", "remove_from_cart", "like", "dislike", "bookmark"}
)
"""What a `track` key (the one in every shop page, readable by anyone) may post: what a page sees a
shopper do. `purchase` and `rating` are not among them: a purchase is a fact of the shop's order system
(its price becomes revenue, propensity labels and customer value, and it takes the item out of the
buyer's recommendations) and a rating is the review system's record (its value moves the shopper's
mean-centred profile); forged from a copied page key, either would poison campaigns and metrics, so
the shop's backend sends them with an `ingest` key. A type added to EventType is backend-only until it
is listed here."""


# A TypedDict, not a model: validating a 1,000-event batch into plain dicts takes under half the time of
# building 1,000 model instances, and ingest throughput is the point of this path. The two rules that
# span fields (item_id unless an order-level purchase; a value on ratings) are checked in
# `app.events.validate`, with the timestamp range.
@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class EventIn(TypedDict, total=False):
    """One shopper action. Unknown fields are rejected so typos never pass silently."""

    event_id: Annotated[
        Id | None,
        Field(description="De-duplication key; an event whose id was seen before is not stored again."),
    ]
    user_id: Required[Id]
    item_id: Annotated[
        Id | None, Field(description="Required for every type but an order-level purchase.")
    ]
    type: Required[EventType]
    value: Annotated[
        float | None, Field(ge=-1e6, le=1e6, description="Rating (1-5 usual) or quantity; required for ratings.")
    ]
    price: Annotated[float | None, Field(ge=0, le=1e9)]
    timestamp: Annotated[
        datetime | None,
        Field(
            description="ISO-8601 (UTC when no offset) or epoch seconds. Default: now. Rejected when more "
            "than SHOPMIND_MAX_FUTURE_SECONDS (default 300) in the future or before 2000-01-01."
        ),
    ]
    session_id: Id | None
    recommendation_id: Annotated[
        RecommendationId | None,
        Field(description="The recommendation_id of the list the shopper acted on (attribution)."),
    ]
    properties: Annotated[BoundedJSON | None, Field(description="Free-form JSON, ≤ 8 KB, ≤ 4 levels.")]


EVENT_FIELDS: tuple[str, ...] = tuple(EventIn.__annotations__)
event_adapter: TypeAdapter[EventIn] = TypeAdapter(EventIn)


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Validated one by one in the service so one bad event never sinks its batch.
    events: Annotated[
        list[dict[str, Any]],
        WithJsonSchema(
            {"type": "array", "items": event_adapter.json_schema(), "minItems": 1, "maxItems": 10_000}
        ),
    ] = Field(min_length=1, description="1 to 10,000 events.")


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
