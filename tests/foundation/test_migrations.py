"""The migrations are the only way the schema is made: they must produce exactly the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from app.db import sqlalchemy_url
from app.events.partitions import is_partition_name
from app.models import Base


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        # the events' monthly partitions are the worker's, not the models' (app.events.partitions)
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, type_, _parents: not (type_ == "table" and is_partition_name(name)),
        })
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
