from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.triggers.kinds import ALL_EVENTS, KINDS


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description="http(s) endpoint receiving signed POSTs.")
    events: list[str] = Field(
        min_length=1, max_length=len(KINDS) + 1,
        description=f"Trigger kinds delivered to it ({', '.join(KINDS)}), or `*` for all.",
    )
    secret: str | None = Field(
        default=None, min_length=16, max_length=200,
        description="The signing secret; generated (and returned once) when absent.",
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e != ALL_EVENTS and e not in KINDS]
        if unknown:
            raise ValueError(f"unknown events {unknown}; use {', '.join(KINDS)} or `*`")
        return sorted(set(events))


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime
    consecutive_failures: int
    disabled_at: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown once: verify `Shopmind-Signature` with it.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    delivery_id: str
    event: str
    user_id: str | None
    status: str = Field(description="pending, delivered or failed (gave up, or refused as a 4xx).")
    attempts: int
    last_status: int | None = Field(description="The receiver's last HTTP status, if it answered.")
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
