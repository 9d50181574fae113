"""A placement's rules, validated at write time: unknown fields, bad ranges and contradictions are 422s.

Every model forbids extra fields, so a misspelt rule (`max_per_categroy`) is an error rather than a
rule silently not applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.common.types import Id

PLACEMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Name = Annotated[str, StringConstraints(pattern=PLACEMENT_NAME)]
Kind = Literal["user", "item", "session", "cart"]
Scalar = Annotated[str, StringConstraints(max_length=256)] | int | float | bool
MAX_N = 100


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_lists(value: object) -> object:
    """{"color": "red"} means {"color": ["red"]}: a list is a set of accepted values."""
    if isinstance(value, dict):
        return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
    return value


Attributes = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=128)],
         Annotated[list[Scalar], Field(min_length=1, max_length=50)]],
    Field(max_length=20),
]


class _Priced(Strict):
    min_price: float | None = Field(default=None, ge=0, le=1e9)
    max_price: float | None = Field(default=None, ge=0, le=1e9)

    @model_validator(mode="after")
    def _price_range(self) -> Self:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price is above max_price")
        return self


class Condition(_Priced):
    """Which items a boost applies to; every part given must hold (tags: any of them)."""

    category: Id | None = None
    brand: Id | None = None
    tags: list[Id] | None = Field(default=None, min_length=1, max_length=50)
    attributes: Attributes | None = Field(
        default=None, description='Scalar item attributes, e.g. {"color": ["red", "blue"], "organic": true}.')

    _lists = field_validator("attributes", mode="before")(_as_lists)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError("a condition needs at least one of category, brand, tags, min_price, max_price, "
                             "attributes")
        return self


class Filters(_Priced):
    """The request filters, plus items never shown here and attribute conditions items must meet."""

    category: Id | None = None
    available_only: bool = True
    exclude_seen: bool = False
    exclude_items: list[Id] = Field(default_factory=list, max_length=1000)
    attributes: Attributes | None = None

    _lists = field_validator("attributes", mode="before")(_as_lists)


class Boost(Strict):
    where: Condition
    factor: float = Field(gt=0, le=100, description="Multiplies the score of matching items (< 1 buries).")


class Pin(Strict):
    item_id: Id
    position: int = Field(ge=1, le=MAX_N, description="1-based slot; shown there when the item is eligible.")


class Diversity(Strict):
    max_per_category: int | None = Field(
        default=None, ge=1, le=MAX_N, description="At most this many items per primary (first) category.")
    lambda_: float | None = Field(
        default=None, alias="lambda", ge=0, le=1,
        description="MMR trade-off over content similarity: 1 ranks by score alone, lower spreads the list.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Rotation(Strict):
    window_minutes: int = Field(ge=1, le=7 * 24 * 60)
    strength: float = Field(ge=0, le=1, description="Score factor 1 - strength for items shown in the window.")


class PlacementIn(Strict):
    kind: Kind = "user"
    n: int = Field(default=10, ge=1, le=MAX_N)
    filters: Filters = Field(default_factory=Filters)
    boosts: list[Boost] = Field(default_factory=list, max_length=20)
    pins: list[Pin] = Field(default_factory=list, max_length=20)
    diversity: Diversity | None = None
    rotation: Rotation | None = None

    @model_validator(mode="after")
    def _pins_distinct(self) -> Self:
        items = [p.item_id for p in self.pins]
        positions = [p.position for p in self.pins]
        if len(set(items)) < len(items):
            raise ValueError("an item is pinned twice")
        if len(set(positions)) < len(positions):
            raise ValueError("two pins share a position")
        if set(items) & set(self.filters.exclude_items):
            raise ValueError("an item is both pinned and in filters.exclude_items")
        return self


class PlacementOut(PlacementIn):
    name: str
    updated_at: datetime


class PlacementList(BaseModel):
    placements: list[PlacementOut]
