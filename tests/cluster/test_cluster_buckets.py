"""The catalog's live state split into `{live:B}` buckets spreads over the masters, and reads merge it
back: the same metadata and the same popularity ranking as one set would hold."""

from __future__ import annotations

import time

import redis as redis_sync
from fastapi.testclient import TestClient

from app.eventlog import POPULARITY_WEIGHTS
from app.settings import Settings
from app.store.keys import Keys
from tests import live_state
from tests.redis_cluster import LocalCluster

ITEMS = [f"item-{k:02d}" for k in range(40)]


def test_live_buckets_spread_over_the_masters(client: TestClient, settings: Settings,
                                              redis_cluster: LocalCluster) -> None:
    keys = Keys.of(settings)
    assert keys.buckets > 1  # a cluster's default
    items = [{"item_id": i, "categories": ["all-of-them"]} for i in ITEMS]
    assert client.post("/v1/items", json={"items": items}).status_code == 200
    now = float(int(time.time()))
    # item k gets k views: one popularity ranking, known in advance
    events = [{"user_id": f"u{j}", "item_id": item, "type": "view", "timestamp": now - 60}
              for k, item in enumerate(ITEMS) for j in range(k)]
    assert client.post("/v1/events", json={"events": events}).json()["realtime_updated"] is True

    rds = redis_cluster.client()
    try:
        used = {keys.bucket(i) for i in ITEMS}
        assert len(used) > 1
        masters = {rds.get_node_from_key(keys.item_meta(b)).port for b in used}  # type: ignore[union-attr]
        assert len(masters) > 1, "the buckets of forty items all sit on one master"
        assert live_state.meta_count(rds, keys) == len(ITEMS)
        scores = live_state.popularity(rds, keys)
        assert scores == live_state.popularity(rds, keys, "all-of-them")
        weight = POPULARITY_WEIGHTS["view"]
        assert sorted(scores, key=lambda i: -scores[i]) == ITEMS[:0:-1]  # item-00 had no view
        assert all(abs(scores[item] - k * weight) < 1e-9 * k for k, item in enumerate(ITEMS) if k)
    finally:
        rds.close()

    # what serving reads: the merged top of every bucket, in the same order
    cold = client.get("/v1/users/nobody-yet/recommendations?n=10").json()
    assert [i["item_id"] for i in cold["items"]] == ITEMS[:-11:-1]
    category = client.get("/v1/users/nobody-yet/recommendations?n=5&category=all-of-them").json()
    assert [i["item_id"] for i in category["items"]] == ITEMS[:-6:-1]


def test_merged_reads_bring_buckets_to_one_t0(redis_url: str, redis_prefix: str) -> None:
    """A bucket that ingest rebased alone holds scores relative to a later T0: the merge scales the
    others down to it before it ranks, so a rebase never reorders the list."""
    import asyncio

    from app.store import live_reads
    from app.store.client import make_async_redis

    keys = Keys(redis_prefix, buckets=4, popularity_half_life_days=1.0)
    a, b = next(i for i in ITEMS if keys.bucket(i) == 0), next(i for i in ITEMS if keys.bucket(i) == 1)
    rds = redis_sync.RedisCluster.from_url(redis_url)
    try:
        rds.set(keys.popularity_epoch(0), 1_000_000.0)
        rds.zadd(keys.popularity(0), {a: 8.0})  # 8 at T0 = 1e6
        rds.set(keys.popularity_epoch(1), 1_000_000.0 + 2 * 86400)
        rds.zadd(keys.popularity(1), {b: 3.0})  # 3 two half-lives later: worth 12 at T0 = 1e6
    finally:
        rds.close()

    async def read() -> list[tuple[bytes, float]]:
        client = make_async_redis(redis_url, cluster=True)
        try:
            return await live_reads.top(client, keys, None, 10)
        finally:
            await client.aclose()

    top = asyncio.run(read())
    assert [m.decode() for m, _ in top] == [b, a]
    assert top[0][1] == 3.0 and abs(top[1][1] - 2.0) < 1e-12  # both at the later T0
