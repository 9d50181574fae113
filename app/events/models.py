from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Float, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.eventlog import EVENT_TYPES

_TYPES_SQL = ", ".join(f"'{t}'" for t in EVENT_TYPES)


class Event(Base):
    """One thing a shopper did. `event_id` is the client's de-duplication key (generated when absent).

    Partitioned by month on `ts` (`app.events.partitions`): a unique key must then include `ts`, so
    `event_id` is kept unique by `EventId`, written in the same transaction (`app.events.store`).
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(256))
    # No foreign keys: their per-row checks halved ingest throughput. Ingest creates the batch's users
    # and items in the same transaction; erasure and merge move or delete a user's events explicitly.
    user_id: Mapped[str] = mapped_column(String(256))
    item_id: Mapped[str | None] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(256))
    recommendation_id: Mapped[str | None] = mapped_column(String(64))
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"type IN ({_TYPES_SQL})", name="type_known"),
        Index("ix_events_user_id_ts", "user_id", "ts"),
        Index("ix_events_ts", "ts"),
        Index("ix_events_recommendation_id", "recommendation_id", postgresql_where="recommendation_id IS NOT NULL"),
        {"postgresql_partition_by": "RANGE (ts)"},
    )


class EventId(Base):
    """Every stored event's id, once: the de-duplication key `events` cannot hold unique itself.

    `ts` is the event's time, so retention forgets the ids of the partitions it drops.
    """

    __tablename__ = "event_ids"

    event_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
