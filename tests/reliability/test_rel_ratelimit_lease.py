"""Token leases: one Redis call pays for several requests, yet replicas together never exceed the bucket."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from app.auth.service import Principal
from app.errors import RateLimited
from app.ratelimit import RateLimiter
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys

KEY = Principal("lease-key", frozenset({"read"}))


def _limited(settings: Settings, rate: float, burst_seconds: float) -> Settings:
    return settings.model_copy(update={"rate_limit_per_second": {"read": rate},
                                       "rate_limit_burst_seconds": burst_seconds})


def test_a_lease_serves_several_requests_from_one_bucket_charge(settings: Settings, rds: redis.Redis) -> None:
    tight = _limited(settings, rate=100.0, burst_seconds=2.0)  # burst 200, lease 5% of 100/s = 5

    async def run() -> None:
        client = make_async_redis(tight.redis_url or "", cluster=tight.redis_cluster)
        limiter = RateLimiter(client, Keys(tight.redis_prefix), tight)
        for _ in range(5):
            await limiter.check(KEY)
        await client.aclose()

    asyncio.run(run())
    tokens = float(rds.hget(Keys.of(settings).rate_limit(KEY.key_id), "tokens") or 0)
    assert tokens == pytest.approx(195.0, abs=1.0)  # charged once, for the whole lease of 5


def test_replicas_sharing_a_bucket_never_pass_more_than_it_holds(settings: Settings) -> None:
    tight = _limited(settings, rate=200.0, burst_seconds=0.1)  # burst 20, leases of 10

    async def run() -> tuple[int, float]:
        clients = [make_async_redis(tight.redis_url or "", cluster=tight.redis_cluster) for _ in range(3)]
        replicas = [RateLimiter(c, Keys(tight.redis_prefix), tight) for c in clients]
        passed = 0
        started = time.monotonic()
        for k in range(90):
            try:
                await replicas[k % 3].check(KEY)
                passed += 1
            except RateLimited:
                pass
        elapsed = time.monotonic() - started
        for c in clients:
            await c.aclose()
        return passed, elapsed

    passed, elapsed = asyncio.run(run())
    assert 10 <= passed <= 20 + 200.0 * elapsed + 1  # the burst plus what refilled meanwhile
