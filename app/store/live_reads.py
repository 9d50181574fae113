"""Reads of the catalog's live state, whatever its number of `{live:B}` buckets: the popularity list
(one sorted set, or the merged tops of the buckets) and item metadata (one HMGET per bucket).

With one bucket a read is the one `ZREVRANGE ... WITHSCORES` it always was, and its reply passes through
untouched. With several, each bucket's top `n` and its T0 are read in the same round trip (redis-py's
cluster pipeline sends each node its share) and merged here: a bucket's scores are relative to its own
T0 (ingest rebases each bucket on its own), so they are brought to the newest T0 first. The top `n` of
the union is the top `n` overall, because each bucket's top `n` holds every member of it from that bucket.
"""

from __future__ import annotations

import heapq
from typing import Any

from app.store.batch import Command, round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import score_pairs
from app.store.keys import Keys


def reads(keys: Keys, category: str | None, n: int) -> list[Command]:
    """The commands that read the top `n` of the overall (or one category's) live popularity."""
    def key(bucket: int) -> str:
        return keys.popularity_category(category, bucket) if category else keys.popularity(bucket)

    if keys.buckets <= 1:
        return [("ZREVRANGE", key(0), 0, n - 1, "WITHSCORES")]
    tops: list[Command] = [("ZREVRANGE", key(b), 0, n - 1, "WITHSCORES") for b in range(keys.buckets)]
    return tops + [("GET", keys.popularity_epoch(b)) for b in range(keys.buckets)]


def merged(keys: Keys, replies: list[Any], n: int) -> list[Any]:
    """The replies of `reads` as one `ZREVRANGE ... WITHSCORES` reply (RESP3's [[member, score], ...]
    when merged: `codec.score_pairs` reads both shapes)."""
    if keys.buckets <= 1:
        return replies[0]  # type: ignore[no-any-return]
    tops, epochs = replies[: keys.buckets], [float(e) if e is not None else None for e in replies[keys.buckets:]]
    known = [e for e in epochs if e is not None]
    newest = max(known) if known else 0.0
    per_second = 1.0 / (keys.popularity_half_life_days * 86400.0)
    scaled = []
    for top, epoch in zip(tops, epochs, strict=True):
        factor = 2.0 ** ((epoch - newest) * per_second) if epoch is not None else 1.0
        scaled.append([[member, score * factor] for member, score in score_pairs(top)])
    return heapq.nlargest(n, (pair for bucket in scaled for pair in bucket), key=lambda pair: pair[1])


async def top(redis: Any, keys: Keys, category: str | None, n: int) -> list[tuple[bytes, float]]:
    """The top `n` (member, score) pairs, read in one round trip."""
    replies = await round_trip(redis, reads(keys, category, n), TIMEOUT_SECONDS)
    return score_pairs(merged(keys, replies, n))


def meta_reads(keys: Keys, item_ids: list[str]) -> list[Command]:
    """HMGETs of the items' metadata: one per bucket the items fall in."""
    return [("HMGET", keys.item_meta(b), *ids) for b, ids in keys.by_bucket(item_ids).items()]


def meta_replies(keys: Keys, item_ids: list[str], replies: list[Any]) -> list[Any]:
    """The replies of `meta_reads(keys, item_ids)` in the order of `item_ids`."""
    if keys.buckets <= 1:
        return list(replies[0]) if item_ids else []
    found: dict[str, Any] = {}
    for (_, ids), values in zip(keys.by_bucket(item_ids).items(), replies, strict=True):
        found.update(zip(ids, values, strict=True))
    return [found[i] for i in item_ids]


async def metas(redis: Any, keys: Keys, item_ids: list[str]) -> list[Any]:
    """The items' raw metadata (None where unknown), in the order of `item_ids`, in one round trip."""
    if not item_ids:
        return []
    return meta_replies(keys, item_ids, await round_trip(redis, meta_reads(keys, item_ids), TIMEOUT_SECONDS))
