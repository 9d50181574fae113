"""Test fixtures on the real Postgres and Redis.

One scratch database per test session, built by `alembic upgrade head` (the migrations are the only
way the schema is made); every table truncated after each test. Redis keys carry a prefix unique to
each test, deleted after it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from tests import servers

ADMIN_KEY = "sm_test_admin_key_0123456789"
TABLES = ("events", "event_ids", "items", "users", "api_keys", "model_runs", "redis_skips", "user_erasures",
          "placements", "webhooks", "webhook_deliveries", "triggers", "trigger_pending", "trigger_fires", "propensity_high_tiers",
          "experiments", "experiment_exposures")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    admin = servers.postgres_admin_url()
    url, name = servers.create_scratch_database(admin)
    upgrade(url)
    yield url
    servers.drop_database(admin, name)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return servers.redis_url()


def _truncate(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


def _delete_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@contextlib.contextmanager
def isolated_settings(database_url: str, redis_url: str) -> Iterator[Settings]:
    """Settings with a Redis prefix of their own; tables and keys cleaned up afterwards."""
    prefix = f"smtest:{uuid.uuid4().hex[:12]}:"
    try:
        yield Settings(
            database_url=database_url, redis_url=redis_url, redis_prefix=prefix,
            admin_key=SecretStr(ADMIN_KEY), _env_file=None,  # type: ignore[call-arg]
        )
    finally:
        _truncate(database_url)
        _delete_prefix(redis_url, prefix)


@pytest.fixture
def pg(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection for assertions on what is stored; tables emptied afterwards."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
    _truncate(database_url)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"smtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    _delete_prefix(redis_url, prefix)


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str, pg: object) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        admin_key=SecretStr(ADMIN_KEY),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c
