"""`score_pairs` reads a raw ZREVRANGE ... WITHSCORES reply as redis-py's own parsing would, either protocol."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from app.store.codec import score_pairs
from tests import servers


@pytest.mark.parametrize("protocol", [2, 3])
def test_raw_reply_matches_redis_py_parsing(
    rds: redis.Redis, redis_url: str, redis_prefix: str, protocol: int
) -> None:
    key = f"{redis_prefix}pop"
    rds.zadd(key, {"a": 2.219920859168219e48, "b": 0.1, "c": 3.0})

    async def read() -> tuple[list[tuple[bytes, float]], list[tuple[bytes, float]]]:
        kind = RedisCluster if servers.is_cluster(redis_url) else aioredis.Redis
        client = kind.from_url(redis_url, protocol=protocol)
        raw = await client.execute_command("ZREVRANGE", key, 0, -1, "WITHSCORES")
        parsed = await client.zrevrange(key, 0, -1, withscores=True)
        await client.aclose()
        return score_pairs(raw), [(m, float(s)) for m, s in parsed]

    ours, theirs = asyncio.run(read())
    assert ours == theirs == [(b"a", 2.219920859168219e48), (b"c", 3.0), (b"b", 0.1)]


def test_an_empty_reply_has_no_pairs() -> None:
    assert score_pairs([]) == []
