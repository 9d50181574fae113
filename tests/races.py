"""Holding a race at a known point, on the real servers: Postgres lock waits seen in pg_stat_activity,
and a Redis client that runs a step just before its first write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

# Commands our code reads Redis with; anything else counts as a write (EVAL/EVALSHA included).
READS = frozenset({"GET", "MGET", "HGET", "HMGET", "HGETALL", "LRANGE", "SMEMBERS", "SISMEMBER", "ZRANGE",
                   "ZRANGEBYSCORE", "ZSCORE", "EXISTS", "TYPE", "SCAN", "SCRIPT LOAD", "PING"})


def lock_waits(conn: psycopg.Connection[Any]) -> int:
    """Backends of this database waiting on a lock (a row, a transaction or an advisory lock)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll for a condition the race reached (not a sleep standing in for one)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


def _is_write(args: tuple[Any, ...]) -> bool:
    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    return name.upper() not in READS


class BeforeFirstWrite(aioredis.Redis):
    """A real client that awaits `step()` once, just before it sends its first writing command (alone
    or in a pipeline): the point between a read-modify-write's read and its write."""

    step: Callable[[], Awaitable[None]]
    _held = False

    async def _hold(self, commands: list[tuple[Any, ...]]) -> None:
        if not self._held and any(_is_write(c) for c in commands):
            self._held = True
            await self.step()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        await self._hold([args])
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        client = self

        class _Held(Pipeline):
            async def execute(self, raise_on_error: bool = True) -> list[Any]:
                await client._hold([args for args, _ in self.command_stack])
                return await super().execute(raise_on_error)

        return _Held(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class BeforeFirstWriteOnCluster(RedisCluster):
    """`BeforeFirstWrite` for a Redis Cluster (its single commands; scripts included)."""

    step: Callable[[], Awaitable[None]]
    _held = False

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if not self._held and _is_write(args):
            self._held = True
            await self.step()
        return await super().execute_command(*args, **options)
