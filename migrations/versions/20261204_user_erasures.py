"""user_erasures: a tombstone per erased user, so a rebuild running meanwhile does not republish them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_erasures",
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_erasures")),
    )
    op.create_index(op.f("ix_user_erasures_erased_at"), "user_erasures", ["erased_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_user_erasures_erased_at"), table_name="user_erasures")
    op.drop_table("user_erasures")
