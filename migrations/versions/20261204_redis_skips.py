"""redis_skips: writes that reached Postgres while Redis was unreachable, for the next rebuild to repair

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redis_skips",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("path", sa.String(length=32), nullable=False),
        sa.Column("skipped_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redis_skips")),
    )


def downgrade() -> None:
    op.drop_table("redis_skips")
