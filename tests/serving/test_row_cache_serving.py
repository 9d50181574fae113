"""The per-version neighbour row cache on real Redis: rows come from the serving version only, a new
version starts from nothing, and a deleted item still disappears at once though its rows and its
metadata are cached."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from app.catalog.service import unpublish_item
from app.recommend.algo_validate import RecommenderConfig
from app.recommend.model_cache import ModelCache
from app.recommend.service import Query, RecommendService
from app.store.client import make_async_redis
from app.store.codec import encode_history, item_meta_json, pack_neighbours
from app.store.keys import Keys
from app.store.versions import VersionWriter
from tests import servers

ITEMS = ["a", "b", "c", "d"]


def _publish(rds: redis.Redis, keys: Keys, version: str, cf: dict[str, list[tuple[int, float]]]) -> None:
    """A hand-made version: four items, the given CF rows, no content rows."""
    writer = VersionWriter(rds, keys, version)
    writer.blob("items", "\n".join(ITEMS).encode())
    writer.blob("evidence", np.full(len(ITEMS), 5, dtype="<f4").tobytes())
    writer.blob("popularity", np.ones(len(ITEMS), dtype="<f4").tobytes())
    writer.hash("cf", [(item, pack_neighbours(np.array([i for i, _ in row], dtype=np.int32),
                                              np.array([s for _, s in row], dtype=np.float32)))
                       for item, row in cf.items()])
    writer.meta({"recommender_config": json.dumps(dataclasses.asdict(RecommenderConfig())), "built_at": 0})
    writer.publish(keep=2)


@pytest.fixture
def shop(rds: redis.Redis, redis_prefix: str) -> Iterator[Keys]:
    """Items a-d in the catalog; shopper u viewed a."""
    keys = Keys(redis_prefix)
    rds.hset(keys.item_meta(), mapping={i: item_meta_json([], 10.0, True, f"Item {i}") for i in ITEMS})
    rds.lpush(keys.history("u"), encode_history(1_700_000_000.0, "view", "a"))
    yield keys


def _ask(redis_url: str, keys: Keys, steps: list[str]) -> list[list[str]]:
    """Run `steps` ("recommend", "delete ITEM" as the catalog's DELETE does it, or a Redis command line)
    in one process, as one API worker would."""

    async def run() -> list[list[str]]:
        client = make_async_redis(redis_url, cluster=servers.is_cluster(redis_url))
        service = RecommendService(client, keys, ModelCache(client, keys))
        answers = []
        for step in steps:
            if step == "recommend":
                recs = await service.for_user("u", Query(n=2))
                answers.append([i.item_id for i in recs.items if i.sources.cf > 0])
            elif step.startswith("delete "):
                await unpublish_item(client, keys, step.split()[1])
            else:
                await client.execute_command(*step.split())
        await client.aclose()
        return answers

    return asyncio.run(run())


def test_a_cached_row_needs_no_redis_read_and_a_new_version_brings_its_own(
    rds: redis.Redis, redis_url: str, shop: Keys
) -> None:
    _publish(rds, shop, "v1", {"a": [(1, 1.0), (2, 0.5)]})
    _publish(rds, shop, "v2", {"a": [(3, 1.0)]})
    rds.set(shop.model_pointer(), "v1")
    cf_v1 = shop.model("v1", "cf")
    answers = _ask(redis_url, shop, [
        "recommend",
        f"DEL {cf_v1}",  # gone from Redis: the second answer can only come from the cache
        "recommend",
        f"SET {shop.model_pointer()} v2",
        "recommend",
    ])
    assert answers == [["b", "c"], ["b", "c"], ["d"]]


def test_a_deleted_item_disappears_at_once_though_its_rows_are_cached(
    rds: redis.Redis, redis_url: str, shop: Keys
) -> None:
    _publish(rds, shop, "v1", {"a": [(1, 1.0), (2, 0.5)]})
    answers = _ask(redis_url, shop, ["recommend", "delete b", "recommend"])
    assert answers == [["b", "c"], ["c"]]
