from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import BoundedJSON, Id, LongText, ShortText

Label = Id  # categories and tags: 1-256 characters, no control characters
MAX_ITEMS_PER_BATCH = 10_000


class ItemIn(BaseModel):
    """Catalog fields. PUT replaces them all; fields left out take their defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    title: ShortText | None = None
    description: LongText | None = None
    categories: list[Label] = Field(default_factory=list, max_length=50)
    tags: list[Label] = Field(default_factory=list, max_length=100)
    brand: ShortText | None = None
    price: float | None = Field(default=None, ge=0, le=1e9)
    available: bool = True
    attributes: BoundedJSON = Field(default_factory=dict)


class ItemWithId(ItemIn):
    item_id: Id


class ItemBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The 10,000 cap is checked by the route so that it answers 413 (too large), not 422.
    items: list[ItemWithId] = Field(min_length=1, json_schema_extra={"maxItems": MAX_ITEMS_PER_BATCH})


class ItemOut(ItemWithId):
    created_at: datetime
    updated_at: datetime


class ItemBatchOut(BaseModel):
    upserted: int


class ItemDeleted(BaseModel):
    item_id: str
    deleted: bool = True
