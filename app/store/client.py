"""Redis clients built from settings (async for the API, sync for the worker and CLI)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis


def make_async_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30, max_connections=64
    )


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0)
