"""Alembic environment: the URL comes from the config (set by `shopmind migrate`) or from settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from app.db import sqlalchemy_url
from app.events.partitions import is_partition_name
from app.models import Base
from app.settings import get_settings

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate leaves the events' monthly partitions alone: the worker makes and drops them."""
    return not (type_ == "table" and is_partition_name(name))


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise SystemExit("No database URL: set SHOPMIND_DATABASE_URL or run `shopmind migrate`.")
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                          include_name=include_name)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
