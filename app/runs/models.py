from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class ModelRun(Base):
    """One rebuild attempt by the worker: its status, version, per-stage timings and offline metrics."""

    __tablename__ = "model_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), server_default=text("'rebuild'"))
    status: Mapped[str] = mapped_column(String(16))  # queued | running | succeeded | failed
    version: Mapped[str | None] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(32), server_default=text("'schedule'"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    stages: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(Text)


class RedisSkip(Base):
    """A write that reached Postgres but not Redis (unreachable), recorded before the answer.

    Redis then lags Postgres where an outage could otherwise go unnoticed: it may come back with its
    data and sentinel intact, so nothing marks it as needing a re-hydration. The next rebuild finds
    these rows, re-hydrates items and histories from its snapshot, then deletes the rows it covered.
    """

    __tablename__ = "redis_skips"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(String(32))  # which write: items.publish, events.realtime, ...
    skipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
