"""users, items: a counter that every deletion of their rows moves forward

API processes remember which users and items they have already stored, so an ingest batch inserts only
the ids it brings new. A statement trigger on users and items (erasure, merge, a manual DELETE or
TRUNCATE) advances the sequence `id_deletions` before any row goes; a batch that sees it moved forgets
what it remembered.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE id_deletions")
    op.execute("""
        CREATE FUNCTION note_id_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM nextval('id_deletions');
            RETURN NULL;
        END $$
    """)
    for table in ("users", "items"):
        op.execute(f"""
            CREATE TRIGGER {table}_deletion_counted BEFORE DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION note_id_deletion()
        """)


def downgrade() -> None:
    for table in ("users", "items"):
        op.execute(f"DROP TRIGGER {table}_deletion_counted ON {table}")
    op.execute("DROP FUNCTION note_id_deletion()")
    op.execute("DROP SEQUENCE id_deletions")
