"""`store.batch.round_trip` on real Redis: raw replies in order, an error reply raised without
leaving the connection out of step, and a silent server given up on after the timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from app.store.batch import round_trip
from app.store.client import make_async_redis
from app.store.codec import score_pairs
from tests import servers


def test_replies_come_back_raw_and_in_order(rds: redis.Redis, redis_url: str, redis_prefix: str) -> None:
    rds.set(f"{redis_prefix}s", "v")
    rds.rpush(f"{redis_prefix}l", "a", "b")
    rds.zadd(f"{redis_prefix}z", {"x": 2.5})

    async def run() -> list[Any]:
        client = make_async_redis(redis_url, cluster=servers.is_cluster(redis_url), command_timeouts=False)
        try:
            return await round_trip(client, [
                ("GET", f"{redis_prefix}s"), ("GET", f"{redis_prefix}missing"), ("LRANGE", f"{redis_prefix}l", 0, -1),
                ("ZREVRANGE", f"{redis_prefix}z", 0, -1, "WITHSCORES"),
            ], 2.0)
        finally:
            await client.aclose()

    *plain, scored = asyncio.run(run())
    assert plain == [b"v", None, [b"a", b"b"]]
    assert score_pairs(scored) == [(b"x", 2.5)]  # RESP2 or RESP3, as the URL asks


def test_an_error_reply_raises_and_the_connection_stays_in_step(
    rds: redis.Redis, redis_url: str, redis_prefix: str
) -> None:
    rds.set(f"{redis_prefix}s", "v")

    async def run() -> list[object]:
        client = make_async_redis(redis_url, cluster=servers.is_cluster(redis_url), command_timeouts=False)
        try:
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await round_trip(client, [("LRANGE", f"{redis_prefix}s", 0, -1), ("GET", f"{redis_prefix}s"),
                                          ("ECHO", "late")], 2.0)
            # one pooled connection: the replies after the error were read, not left for this call
            return await round_trip(client, [("ECHO", "next")], 2.0)
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [b"next"]


def test_a_silent_server_times_out_as_an_os_error() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)

        async def run() -> None:
            client = make_async_redis(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", command_timeouts=False)
            try:
                await round_trip(client, [("GET", "k")], 0.5)
            finally:
                await client.aclose()

        started = time.monotonic()
        with pytest.raises(OSError):  # TimeoutError: the routes answer it like a refused connection
            asyncio.run(run())
        assert time.monotonic() - started < 3.0
