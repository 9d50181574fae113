"""Run the Alembic migrations from code (`shopmind migrate`, tests, embedded start)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

from app.common import locks
from app.db import libpq_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    import migrations

    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to `revision`, one process at a time: every API server and worker migrates at start, and
    two Alembic runs at once both see the same old version, run the same DDL and one of them fails.
    The lock lives on a connection of its own; if this process dies, Postgres releases it."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as guard:
        guard.execute("SELECT pg_advisory_lock(%s)", (locks.MIGRATIONS,))
        try:
            command.upgrade(alembic_config(database_url), revision)
        finally:
            guard.execute("SELECT pg_advisory_unlock(%s)", (locks.MIGRATIONS,))
