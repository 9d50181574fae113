from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Trigger(Base):
    """A named behaviour trigger. `delay_seconds` and `kind` are columns: ingest's set-based arming
    statements join on them."""

    __tablename__ = "triggers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    delay_seconds: Mapped[int] = mapped_column(Integer)
    cooldown_seconds: Mapped[int] = mapped_column(Integer)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    recommendations: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TriggerPending(Base):
    """A trigger armed for one shopper: it fires at `due_at` unless cancelled first.

    `subject` tells one shopper's rows of one trigger apart: '' for a cart, the category for browsing,
    the item for back-in-stock. `due_at` is NULL while the row only counts (views below the threshold,
    an item still unavailable).
    """

    __tablename__ = "trigger_pending"

    trigger_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("triggers.name", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    subject: Mapped[str] = mapped_column(String(256), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    item_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    views: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    __table_args__ = (
        Index("ix_trigger_pending_due_at", "due_at", postgresql_where=text("due_at IS NOT NULL")),
        Index("ix_trigger_pending_user_id", "user_id"),
        Index("ix_trigger_pending_subject", "subject", postgresql_where=text("due_at IS NULL")),
    )


class TriggerFire(Base):
    """The last time a trigger fired for a shopper: the cooldown's memory."""

    __tablename__ = "trigger_fires"

    trigger_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("triggers.name", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_trigger_fires_user_id", "user_id"),)


class HighTier(Base):
    """Who was in the `high` tier of a propensity target at the last rebuild: a rebuild compares its
    own tiers with these rows to find the shoppers who crossed into it."""

    __tablename__ = "propensity_high_tiers"

    target: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
