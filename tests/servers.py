"""Real Postgres and Redis for the test suite: the servers named in SHOPMIND_TEST_DATABASE_URL and
SHOPMIND_TEST_REDIS_URL, else the local ones, else embedded ones started from the pip-installed server
packages. Never skipped, never faked.

The service's own SHOPMIND_DATABASE_URL and SHOPMIND_REDIS_URL are deliberately not read: a shell that
has them set points at a real deployment, and the suite creates databases, truncates tables and
deletes Redis keys. Test servers are named only by the variables that say so.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import psycopg
import redis
from redis.cluster import RedisCluster
from sqlalchemy.engine import make_url

from app.db import libpq_url


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_embedded = None


def _embedded_servers():  # type: ignore[no-untyped-def]
    global _embedded
    if _embedded is None:
        from app.embedded import EmbeddedServers

        _embedded = EmbeddedServers(Path(tempfile.mkdtemp(prefix="shopmind-test-")))
        _embedded.start()
    return _embedded


def postgres_admin_url() -> str:
    url = os.environ.get("SHOPMIND_TEST_DATABASE_URL")
    if url:
        return libpq_url(url)
    if _reachable("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return _embedded_servers().database_url


def redis_url() -> str:
    url = os.environ.get("SHOPMIND_TEST_REDIS_URL")
    if url:
        return url
    if _reachable("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    return _embedded_servers().redis_url


def create_scratch_database(admin_url: str) -> tuple[str, str]:
    """A fresh database on the same server; returns (its URL, its name)."""
    name = f"shopmind_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, name


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_cluster_urls: set[str] = set()


def register_cluster(url: str) -> None:
    """`url` names a node of a Redis Cluster this session started (`tests.redis_cluster`)."""
    _cluster_urls.add(url)


def is_cluster(url: str) -> bool:
    return url in _cluster_urls


def redis_client(url: str) -> redis.Redis:
    """A sync client of the test server behind `url`: redis-py's cluster client for a cluster (it routes
    each key to its node and runs SCAN on every master), else a plain one. Typed as `Redis`, as the
    app's own clients are (`app.store.client`)."""
    if is_cluster(url):
        return RedisCluster.from_url(url)  # type: ignore[return-value]
    return redis.Redis.from_url(url)
