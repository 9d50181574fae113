"""Millions of commands or arguments from the worker (hydrate, a version's parts), sent in batches
without redis-py's pipeline.

Each batch is packed by hiredis in C, sent at once on one connection, then its replies read: a
redis-py pipeline spends ~10 us of Python per command, and hydrating a million shoppers takes ~4 million
commands; it also encodes every argument in Python, and a version's per-shopper hashes carry millions.
On a Redis Cluster each node gets batches of the commands whose key it serves. An error reply raises
(the rebuild fails loudly), as does a slot that moved: unlike redis-py's cluster pipeline, nothing here
follows a redirection, and the next rebuild writes the version again.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from hiredis import pack_command
from redis.cluster import RedisCluster

from app.store.batch import Command, command_key

BATCH_COMMANDS = 20_000


def send(client: redis.Redis, commands: Iterable[Command], batch: int = BATCH_COMMANDS) -> None:
    """`batch`: commands per round trip (fewer when each carries thousands of arguments)."""
    if not isinstance(client, RedisCluster):
        _send_batches(client, commands, batch)
        return
    pending: dict[str, list[Command]] = {}
    nodes: dict[str, redis.Redis] = {}
    for command in commands:
        node = client.get_node_from_key(command_key(command))
        waiting = pending.setdefault(node.name, [])
        waiting.append(command)
        nodes.setdefault(node.name, client.get_redis_connection(node))
        if len(waiting) >= batch:
            _send_batches(nodes[node.name], waiting, batch)
            waiting.clear()
    for name, waiting in pending.items():
        _send_batches(nodes[name], waiting, batch)


def _send_batches(client: redis.Redis, commands: Iterable[Command], batch_size: int) -> None:
    it = iter(commands)
    conn = client.connection_pool.get_connection()
    try:
        while batch := [c for _, c in zip(range(batch_size), it, strict=False)]:
            # hiredis' stub types the argument as a 1-tuple; it takes any length
            conn.send_packed_command([b"".join(pack_command(c) for c in batch)])  # type: ignore[no-untyped-call,arg-type]
            for _ in batch:
                conn.read_response()
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # unread replies: the connection is not reusable
        raise
    finally:
        client.connection_pool.release(conn)
