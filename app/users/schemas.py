from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import BoundedJSON, Id
from app.triggers.schemas import ShopperCampaigns


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    attributes: BoundedJSON = Field(default_factory=dict, description="Free-form, e.g. country, segment.")


class UserOut(BaseModel):
    user_id: str
    attributes: BoundedJSON
    created_at: datetime
    updated_at: datetime
    event_count: int


class UserErased(BaseModel):
    user_id: str
    erased: bool = True
    events_deleted: int


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_user_id: Id = Field(description="The anonymous (or duplicate) user whose events move over.")


class MergeOut(BaseModel):
    user_id: str
    merged_from: str
    events_moved: int


class UserRecord(BaseModel):
    user_id: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ExportedEvent(BaseModel):
    """An events row, every column."""

    id: int
    event_id: str
    user_id: str
    item_id: str | None
    type: str
    value: float | None
    price: float | None
    ts: datetime
    session_id: str | None
    recommendation_id: str | None
    properties: dict[str, Any] | None
    received_at: datetime


class HistoryEntry(BaseModel):
    ts: float = Field(description="Epoch seconds.")
    type: str
    value: float | None = Field(default=None, description="Rating or quantity, when the event had one.")
    item_id: str


class StoredValue(BaseModel):
    """A Redis value: decoded when it is JSON or text, else its bytes as base64."""

    encoding: Literal["json", "text", "base64"]
    value: Any


class ModelUserState(BaseModel):
    """What one model version holds about the user (the parts its meta hash lists as per-user)."""

    version: str
    fields: dict[str, StoredValue] = Field(description="The user's field in each `user_parts` hash.")
    scores: dict[str, float] = Field(description="The user's score in each `user_zsets` sorted set.")
    in_user_table: bool = Field(description="Whether the version's user id table lists the user.")


class RedisUserState(BaseModel):
    history: list[HistoryEntry] = Field(description="Recent-history list, newest first.")
    purchased: list[str] = Field(description="Item ids in the purchased set.")
    current_model_version: str | None = Field(description="The serving model version, if any.")
    models: list[ModelUserState] = Field(description="Per-user state in every live model version.")
    other_keys: dict[str, StoredValue | list[StoredValue] | dict[str, StoredValue]] = Field(
        default_factory=dict, description="Any further per-user key, by name."
    )


class UserExport(BaseModel):
    """Everything Shopmind stores about one user (GDPR access / portability)."""

    exported_at: datetime
    user: UserRecord
    events: list[ExportedEvent]
    redis: RedisUserState
    campaigns: ShopperCampaigns = Field(default_factory=ShopperCampaigns)
