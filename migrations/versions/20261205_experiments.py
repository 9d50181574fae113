"""experiments: A/B tests on a placement and their exposure log (issue 14, parts 2 and 3)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("placement", sa.String(length=64), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("starts_at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=False),
        sa.Column("stopped_at", _TS, nullable=True),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
    )
    op.create_index("ix_experiments_placement", "experiments", ["placement"])
    # Append-only, written in batches by COPY; BRIN on the time column keeps pruning old weeks cheap
    # (DELETE ... WHERE exposed_at < cutoff touches only the ranges it needs).
    op.create_table(
        "experiment_exposures",
        sa.Column("experiment_id", sa.BigInteger(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("recommendation_id", sa.String(length=120), nullable=False),
        sa.Column("exposed_at", _TS, nullable=False),
    )
    op.create_index("ix_experiment_exposures_experiment_user", "experiment_exposures", ["experiment_id", "user_id"])
    op.create_index("ix_experiment_exposures_recommendation", "experiment_exposures", ["recommendation_id"])
    op.create_index("ix_experiment_exposures_exposed_at", "experiment_exposures", ["exposed_at"],
                    postgresql_using="brin")


def downgrade() -> None:
    op.drop_table("experiment_exposures")
    op.drop_table("experiments")
