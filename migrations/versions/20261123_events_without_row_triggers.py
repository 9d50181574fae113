"""events: drop the per-row foreign-key checks and the item index, for ingest throughput

The foreign keys from events to users and items cost two trigger calls per inserted row (about 45 %
of the insert time of a 1,000-event batch). Referential integrity holds by construction instead:
ingest upserts the batch's users and items in the same transaction before its events, erasure deletes
a user's events explicitly, merging moves them explicitly, and items are never hard-deleted. No query
looks events up by item, so that index only slowed writes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_events_user_id_users", "events", type_="foreignkey")
    op.drop_constraint("fk_events_item_id_items", "events", type_="foreignkey")
    op.drop_index("ix_events_item_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_item_id", "events", ["item_id"], unique=False)
    op.create_foreign_key("fk_events_item_id_items", "events", "items", ["item_id"], ["item_id"])
    op.create_foreign_key(
        "fk_events_user_id_users", "events", "users", ["user_id"], ["user_id"],
        onupdate="CASCADE", ondelete="CASCADE",
    )
