"""webhooks and triggers: endpoints, the delivery outbox, triggers and their pending rows (issue 15)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("disabled_at", _TS, nullable=True),
        sa.Column("last_success_at", _TS, nullable=True),
        sa.Column("last_failure_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("webhook_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_webhook_deliveries_delivery_id")),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_webhook_deliveries_webhook_id_id", "webhook_deliveries", ["webhook_id", "id"])
    op.create_index("ix_webhook_deliveries_user_id", "webhook_deliveries", ["user_id"])
    op.create_table(
        "triggers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("delay_seconds", sa.Integer(), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=False),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("recommendations", postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", _TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_triggers")),
    )
    op.create_table(
        "trigger_pending",
        sa.Column("trigger_name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("last_at", _TS, nullable=False),
        sa.Column("due_at", _TS, nullable=True),
        sa.Column("item_ids", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("views", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["trigger_name"], ["triggers.name"],
                                name=op.f("fk_trigger_pending_trigger_name_triggers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trigger_name", "user_id", "subject", name=op.f("pk_trigger_pending")),
    )
    op.create_index("ix_trigger_pending_due_at", "trigger_pending", ["due_at"],
                    postgresql_where=sa.text("due_at IS NOT NULL"))
    op.create_index("ix_trigger_pending_user_id", "trigger_pending", ["user_id"])
    op.create_index("ix_trigger_pending_subject", "trigger_pending", ["subject"],
                    postgresql_where=sa.text("due_at IS NULL"))
    op.create_table(
        "trigger_fires",
        sa.Column("trigger_name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("fired_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["trigger_name"], ["triggers.name"],
                                name=op.f("fk_trigger_fires_trigger_name_triggers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("trigger_name", "user_id", name=op.f("pk_trigger_fires")),
    )
    op.create_index("ix_trigger_fires_user_id", "trigger_fires", ["user_id"])
    op.create_table(
        "propensity_high_tiers",
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("target", "user_id", name=op.f("pk_propensity_high_tiers")),
    )


def downgrade() -> None:
    op.drop_table("propensity_high_tiers")
    op.drop_table("trigger_fires")
    op.drop_table("trigger_pending")
    op.drop_table("triggers")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
