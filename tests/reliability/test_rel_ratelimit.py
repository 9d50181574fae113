"""Per-key token bucket in Redis: 429 with Retry-After after the burst, back after waiting, fail-open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from app.auth.service import Principal
from app.main import create_app
from app.ratelimit import RateLimiter, rate_for
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys
from tests.conftest import ADMIN_KEY


@pytest.fixture
def slow_client(settings: Settings) -> Iterator[TestClient]:
    """Rates of 1 request/s with a 2 s burst: the third quick request is over the limit."""
    tight = settings.model_copy(
        update={"rate_limit_per_second": {"ingest": 1.0, "read": 1.0, "admin": 1.0}, "rate_limit_burst_seconds": 2.0}
    )
    with TestClient(create_app(tight), headers={"X-API-Key": ADMIN_KEY}) as c:
        yield c


def test_burst_then_429_with_retry_after_then_passes_again(slow_client: TestClient) -> None:
    assert slow_client.get("/v1/items/none").status_code == 404
    assert slow_client.get("/v1/items/none").status_code == 404
    limited = slow_client.get("/v1/items/none")
    assert limited.status_code == 429
    assert limited.json()["error"] == "RateLimited"
    assert limited.headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert slow_client.get("/v1/items/none").status_code == 404


def test_buckets_are_per_key(slow_client: TestClient, scoped_keys: dict[str, str]) -> None:
    for _ in range(2):
        slow_client.get("/v1/items/none")
    assert slow_client.get("/v1/items/none").status_code == 429
    # Another key (a stored read key) has its own full bucket.
    other = slow_client.get("/v1/items/none", headers={"X-API-Key": scoped_keys["read"]})
    assert other.status_code == 404


def test_unauthenticated_requests_do_not_spend_tokens(slow_client: TestClient) -> None:
    for _ in range(5):
        assert slow_client.get("/v1/items/none", headers={"X-API-Key": "sm_nope"}).status_code == 401
    assert slow_client.get("/v1/items/none").status_code == 404


def test_bucket_key_expires(slow_client: TestClient, rds: redis.Redis, settings: Settings) -> None:
    slow_client.get("/v1/items/none")
    ttl = rds.pttl(Keys.of(settings).rate_limit("admin-env"))
    assert 0 < ttl <= 3000


def test_rate_follows_broadest_scope(settings: Settings) -> None:
    rates = {"ingest": 10.0, "read": 20.0, "admin": 5.0}
    s = settings.model_copy(update={"rate_limit_per_second": rates})
    assert rate_for(Principal("k", frozenset({"read"})), s) == 20.0
    assert rate_for(Principal("k", frozenset({"read", "ingest"})), s) == 10.0
    assert rate_for(Principal("k", frozenset({"admin", "read"})), s) == 5.0


def test_fails_open_when_redis_is_unreachable(settings: Settings) -> None:
    async def run() -> None:
        dead = make_async_redis("redis://127.0.0.1:1/0")
        limiter = RateLimiter(dead, Keys.of(settings), settings)
        started = time.monotonic()
        for _ in range(50):
            await limiter.check(Principal("k", frozenset({"read"})))  # never raises
        assert time.monotonic() - started < 2.0
        await dead.aclose()

    asyncio.run(run())
