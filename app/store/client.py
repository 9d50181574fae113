"""Redis clients built from settings (async for the API, sync for the worker and CLI)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

TIMEOUT_SECONDS = 2.0
"""How long one Redis round trip of the API may take before the caller treats Redis as down."""


def make_async_redis(url: str, *, command_timeouts: bool = True) -> aioredis.Redis:
    """The API's client. `command_timeouts=False` is for the serving path, which bounds each of its
    round trips itself (`asyncio.timeout(TIMEOUT_SECONDS)`): redis-py enforces `socket_timeout` with
    `asyncio.wait_for`, a new task per command, which cost ~0.1 ms of CPU per round trip."""
    return aioredis.Redis.from_url(
        url, socket_timeout=TIMEOUT_SECONDS if command_timeouts else None,
        socket_connect_timeout=TIMEOUT_SECONDS, health_check_interval=30, max_connections=64,
    )


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0)
