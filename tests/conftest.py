"""Test fixtures on the real Postgres and Redis.

One scratch database per test session, built by `alembic upgrade head` (the migrations are the only
way the schema is made); every table truncated after each test. Redis keys carry a prefix unique to
each test, deleted after it.

The serving and ingest tests (`CLUSTER_RUN`) run twice: on the single Redis and on a 3-master Redis
Cluster this session starts (`tests.redis_cluster`), as the `redis_backend` parameter `single` or
`cluster` of the session's `redis_url`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings
from tests import servers
from tests.redis_cluster import LocalCluster

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


CLUSTER_RUN = (
    "serving/",
    "foundation/test_ingest.py", "foundation/test_ingest_fastpath.py", "foundation/test_ingest_known_ids.py",
    "foundation/test_popularity_decay.py",
    "recommend/test_live_placement.py",
    "placements/test_placement_serving.py",
    "reliability/test_rel_privacy.py", "reliability/test_rel_user_races.py",  # erasure, export, merge
    "reliability/test_rel_ratelimit.py", "reliability/test_rel_ratelimit_lease.py",
    "reliability/test_rel_repair.py",
    "dashboard/test_dashboard_auth.py", "dashboard/test_dashboard_revocation.py",  # sessions
    "distributed/test_distributed_rebuild.py", "distributed/test_distributed_erasure.py",  # Dask into a cluster
)
"""Test files and folders (under tests/) that run on both Redis backends."""

CLUSTER_ONLY = ("cluster/",)
"""Tests of the cluster itself: only on the `cluster` backend."""

_TESTS = Path(__file__).resolve().parent


def _under(path: Path, names: tuple[str, ...]) -> bool:
    relative = path.resolve().relative_to(_TESTS).as_posix()
    return any(relative == n or (n.endswith("/") and relative.startswith(n)) for n in names)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_backend" not in metafunc.fixturenames:
        return
    if _under(metafunc.definition.path, CLUSTER_ONLY):
        metafunc.parametrize("redis_backend", ["cluster"], indirect=True, scope="session")
    elif _under(metafunc.definition.path, CLUSTER_RUN):
        metafunc.parametrize("redis_backend", ["single", "cluster"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_backend(request: pytest.FixtureRequest) -> str:
    """`single` unless the test is one `pytest_generate_tests` runs on the cluster too."""
    return getattr(request, "param", "single")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """Started at the first test that needs it, stopped at the session's end."""
    cluster = LocalCluster().start()
    servers.register_cluster(cluster.url)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_backend: str, request: pytest.FixtureRequest) -> str:
    if redis_backend == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return servers.redis_url()


def _truncate(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


def _delete_prefix(redis_url: str, prefix: str) -> None:
    client = servers.redis_client(redis_url)
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
            redis_cluster=servers.is_cluster(redis_url), admin_key=SecretStr(ADMIN_KEY),
            _env_file=None,  # type: ignore[call-arg]
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
        redis_cluster=servers.is_cluster(redis_url),
        admin_key=SecretStr(ADMIN_KEY),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = servers.redis_client(redis_url)
    yield client
    client.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c
