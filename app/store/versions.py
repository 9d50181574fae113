"""Model versions in Redis: write every part of version v+1, then flip one pointer.

Readers GET the pointer first and read only keys of that version, so they never see a mix. Replaced
versions keep serving in-flight readers for a grace period, then expire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain, islice
from typing import Any

import redis
import redis.asyncio as aioredis

from app.store import bulk
from app.store.batch import Command
from app.store.codec import text
from app.store.keys import Keys

_CHUNK = 5_000
_CHUNKS_PER_ROUND_TRIP = 8
GRACE_SECONDS = 600


async def versions_holding_users(redis: aioredis.Redis, keys: Keys) -> list[str]:
    """Every version whose keys still exist: the registered ones and those in their grace period."""
    pipe = redis.pipeline(transaction=False)
    pipe.zrange(keys.model_versions(), 0, -1)
    pipe.zrangebyscore(keys.model_expiring(), time.time(), "+inf")
    registered, expiring = await pipe.execute()
    return list(dict.fromkeys(text(v) for v in [*registered, *expiring]))


class PublishFenced(RuntimeError):
    """The rebuild's lock is no longer its own (expired, taken over): it must not flip the pointer."""


# KEYS: the registry, the pointer, the lock (all tagged `{model}`, one slot). ARGV: version, now, the
# lock's token ('' for no fence). Returns 0, changing nothing, if the lock moved. The version's own keys
# live on other slots and are complete before this runs: the pointer is the one thing that moves.
_FLIP = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


def _chunked(command: str, key: str, pairs: Iterable[tuple[Any, Any]]) -> Iterator[Command]:
    """One `command key a1 b1 a2 b2 ...` per _CHUNK pairs, packed by hiredis (`bulk`): through a redis-py
    pipeline, encoding each argument in Python took 8 of the 23 s of CPU that publishing two propensity
    targets of a million shoppers took."""
    it = iter(pairs)
    while chunk := list(islice(it, _CHUNK)):
        yield (command, key, *chain.from_iterable(chunk))


def new_version() -> str:
    return time.strftime("v%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class VersionWriter:
    """Writes the parts of one version; nothing is visible to readers until `publish()`."""

    def __init__(self, client: redis.Redis, keys: Keys, version: str) -> None:
        self.client = client
        self.keys = keys
        self.version = version
        self.written: list[str] = []

    def _key(self, part: str) -> str:
        key = self.keys.model(self.version, part)
        self.written.append(key)
        return key

    def blob(self, part: str, data: bytes) -> None:
        self.client.set(self._key(part), data)

    def hash(self, part: str, fields: Iterable[tuple[str, bytes | str]]) -> None:
        """A hash written in chunks of fields (fields may be a generator over millions of entries)."""
        key = self._key(part)
        bulk.send(self.client, _chunked("HSET", key, fields), batch=_CHUNKS_PER_ROUND_TRIP)

    def zset(self, part: str, members: Iterable[tuple[str, float]]) -> None:
        key = self._key(part)
        bulk.send(self.client, _chunked("ZADD", key, ((s, m) for m, s in members)), batch=_CHUNKS_PER_ROUND_TRIP)

    def meta(self, fields: Mapping[str, str | int | float]) -> None:
        self.client.hset(self._key("meta"), mapping=dict(fields))  # type: ignore[arg-type]

    def publish(self, keep: int, fence: tuple[str, str] | None = None) -> list[str]:
        """Flip the pointer to this version; schedule all but the newest `keep` versions to expire.

        `fence`: (lock key, token). The flip happens only while the lock still holds the token, checked
        in the script that flips; otherwise `PublishFenced` is raised and nothing changed.
        """
        registry = self.keys.model_versions()
        lock_key, token = fence if fence is not None else (self.keys.rebuild_lock(), "")
        key_set = self.keys.model(self.version, "keys")  # what expires with the version, written first
        pipe = self.client.pipeline(transaction=False)
        for first in range(0, len(self.written), _CHUNK):
            pipe.sadd(key_set, *self.written[first:first + _CHUNK])
        pipe.execute()
        flipped = self.client.eval(
            _FLIP, 3, registry, self.keys.model_pointer(), lock_key, self.version, repr(time.time()), token,
        )
        if not flipped:
            raise PublishFenced(f"version {self.version} not published: the rebuild lost its lock")
        stale = self.client.zrange(registry, 0, -(keep + 1))
        expiring = self.keys.model_expiring()
        expired = []
        for raw in stale:
            old = text(raw)
            members = self.client.smembers(self.keys.model(old, "keys"))
            pipe = self.client.pipeline(transaction=False)
            for key in members:
                pipe.expire(key, GRACE_SECONDS)
            pipe.expire(self.keys.model(old, "keys"), GRACE_SECONDS)
            pipe.zadd(expiring, {old: time.time() + GRACE_SECONDS})
            pipe.zrem(registry, old)
            pipe.execute()
            expired.append(old)
        self.client.zremrangebyscore(expiring, "-inf", time.time())
        return expired

    def discard(self) -> None:
        """Drop a version that failed before publishing."""
        if self.written:
            self.client.delete(*self.written, self.keys.model(self.version, "keys"))
