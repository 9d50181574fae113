from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.common.types import BoundedJSON, Id


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
