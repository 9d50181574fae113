from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class User(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UserErasure(Base):
    """A tombstone per erased user: when they were erased (GDPR).

    A rebuild reading Postgres before an erasure would publish the erased user's state again; it
    compares these rows with the ones its snapshot saw and erases the newer ones from what it
    publishes and hydrates (`app.worker.erasures`). Kept a week, then pruned: only rebuilds that
    were running at the time need them, and the id itself is the erased person's data.
    """

    __tablename__ = "user_erasures"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp(), index=True
    )
