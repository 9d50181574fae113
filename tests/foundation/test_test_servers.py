"""The suite picks its servers only from SHOPMIND_TEST_* or the local/embedded ones, never the service's.

A shell with SHOPMIND_DATABASE_URL/SHOPMIND_REDIS_URL exported points at a deployment; the suite
creates and drops databases, truncates tables and deletes Redis keys, so it must not follow them.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from redis import Redis

from tests import servers
from tests.redis_cluster import LocalCluster

PRODUCTION_DB = "postgresql://shop:secret@db.production.invalid:5432/shop"
PRODUCTION_REDIS = "redis://cache.production.invalid:6379/0"


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's shell: the service's URLs set, no test servers named."""
    monkeypatch.delenv("SHOPMIND_TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHOPMIND_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("SHOPMIND_DATABASE_URL", PRODUCTION_DB)
    monkeypatch.setenv("SHOPMIND_REDIS_URL", PRODUCTION_REDIS)


@pytest.mark.usefixtures("production_env")
def test_service_urls_are_never_used_for_tests() -> None:
    postgres = servers.postgres_admin_url()
    redis = servers.redis_url()
    assert "production.invalid" not in postgres, postgres
    assert "production.invalid" not in redis, redis
    # what is used instead answers: the local servers, or embedded ones started for the suite
    with psycopg.connect(postgres, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    client = Redis.from_url(redis)
    try:
        assert client.ping()
    finally:
        client.close()


@pytest.mark.usefixtures("production_env")
def test_test_urls_win_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPMIND_TEST_DATABASE_URL", "postgresql://tester@testdb.invalid:5432/postgres")
    monkeypatch.setenv("SHOPMIND_TEST_REDIS_URL", "redis://testredis.invalid:6379/3")
    assert servers.postgres_admin_url() == "postgresql://tester@testdb.invalid:5432/postgres"
    assert servers.redis_url() == "redis://testredis.invalid:6379/3"


def test_a_missing_redis_server_fails_the_cluster_run_rather_than_skipping_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="redis-cli` is not installed"):
        LocalCluster(root=tmp_path).start()
