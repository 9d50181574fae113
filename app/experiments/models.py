from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, String, Table, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Experiment(Base):
    """An A/B test on a placement; `spec` holds the variants and the primary metric (`ExperimentIn`)."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    placement: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    salt: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_experiments_placement", "placement"),)


# Append-only and written by COPY (`exposures.flush`), read by SQL (`results`): a table, not a mapped
# class, since rows have no identity of their own. BRIN on the time keeps pruning old weeks cheap.
experiment_exposures = Table(
    "experiment_exposures",
    Base.metadata,
    Column("experiment_id", BigInteger, nullable=False),
    Column("variant", String(64), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("recommendation_id", String(120), nullable=False),
    Column("exposed_at", DateTime(timezone=True), nullable=False),
    Index("ix_experiment_exposures_experiment_user", "experiment_id", "user_id"),
    Index("ix_experiment_exposures_recommendation", "recommendation_id"),
    Index("ix_experiment_exposures_exposed_at", "exposed_at", postgresql_using="brin"),
)
