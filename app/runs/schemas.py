from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    version: str | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    stages: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None


class ModelsOut(BaseModel):
    current_version: str | None
    meta: dict[str, str]
    current: RunOut | None
    runs: list[RunOut]


class RebuildQueued(BaseModel):
    job_id: int
    status: str
