"""Redis clients built from settings (async for the API, sync for the worker and CLI).

With `cluster=True` the clients are redis-py's `RedisCluster`, which discovers the other nodes from
the one in the URL and routes each command by its key's slot. They offer the same command methods and
`pipeline()` (split per node), so they are typed as `Redis` and the call sites stay one; the few places
that reach below the command API (`store.batch`, `store.routing`) check which client they hold.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError, RedisClusterException

TIMEOUT_SECONDS = 2.0
"""How long one Redis round trip of the API may take before the caller treats Redis as down."""


class _Pipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc


class _Cluster(AsyncRedisCluster):
    """redis-py's cluster client, whose "no node answers" (`RedisClusterException`, not a `RedisError`)
    is raised as the `ConnectionError` a single Redis raises when down: every caller already degrades
    on that (ingest commits without its real-time update, serving falls back to popularity)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # as redis-py's own pipeline()


def make_async_redis(url: str, *, cluster: bool = False, command_timeouts: bool = True) -> aioredis.Redis:
    """The API's client. `command_timeouts=False` is for the serving path, which bounds each of its
    round trips itself (`asyncio.timeout(TIMEOUT_SECONDS)`): redis-py enforces `socket_timeout` with
    `asyncio.wait_for`, a new task per command, which cost ~0.1 ms of CPU per round trip."""
    if cluster:
        # a master that died answers nothing: give up on it after one timeout, and let the next
        # command re-read the slot map (a replica is promoted within the cluster's node timeout)
        return cast(aioredis.Redis, _Cluster.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS,
            max_connections=64, cluster_error_retry_attempts=1,
        ))
    return aioredis.Redis.from_url(
        url, socket_timeout=TIMEOUT_SECONDS if command_timeouts else None,
        socket_connect_timeout=TIMEOUT_SECONDS, health_check_interval=30, max_connections=64,
    )


def make_redis(url: str, *, cluster: bool = False) -> redis.Redis:
    if cluster:
        return cast(redis.Redis, RedisCluster.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0))
    return redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0)
