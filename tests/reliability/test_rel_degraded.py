"""The Postgres fallback while Redis is down: one query per category however many misses arrive at
once, the shopper's purchases left out, and the same popularity weights as the live sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import make_async_engine
from app.eventlog import POPULARITY_WEIGHTS
from app.main import create_app
from app.recommend.degraded import DegradedPopularity
from app.settings import Settings
from app.store.keys import Keys
from tests import live_state
from tests.conftest import ADMIN_KEY

DEAD_REDIS = "redis://127.0.0.1:1/0"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def no_redis(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"redis_url": DEAD_REDIS})), headers=AUTH) as c:
        yield c


def _ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_concurrent_degraded_misses_share_one_query(client: TestClient, database_url: str) -> None:
    client.post("/v1/events", json={"events": [
        {"user_id": f"u{k}", "item_id": f"i{k % 3}", "type": "view"} for k in range(9)]})

    async def burst() -> tuple[int, list[list[str]]]:
        engine = make_async_engine(database_url, pool_size=5)
        popular_queries = 0

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            nonlocal popular_queries
            popular_queries += "GROUP BY i.item_id" in statement

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            fallback = DegradedPopularity(async_sessionmaker(engine, class_=AsyncSession))
            answers = await asyncio.gather(*(fallback.recommend(3, None, True, set()) for _ in range(20)))
            again = await fallback.recommend(3, None, True, set())  # within the TTL: cached
            return popular_queries, [[i.item_id for i in a.items] for a in [*answers, again]]
        finally:
            await engine.dispose()

    queries, lists = asyncio.run(burst())
    assert queries == 1
    assert all(items == lists[0] for items in lists) and sorted(lists[0]) == ["i0", "i1", "i2"]


def test_degraded_recommendations_leave_out_the_shoppers_purchases(
    client: TestClient, no_redis: TestClient
) -> None:
    client.post("/v1/items", json={"items": [{"item_id": x, "title": x} for x in ("hot", "warm", "cool")]})
    events = [{"user_id": f"fan{k}", "item_id": "hot", "type": "purchase"} for k in range(4)]
    events += [{"user_id": f"fan{k}", "item_id": "warm", "type": "add_to_cart"} for k in range(2)]
    events += [{"user_id": "fan0", "item_id": "cool", "type": "view"}, {"user_id": "buyer", "item_id": "hot",
                                                                         "type": "purchase"},
               {"user_id": "buyer", "item_id": "warm", "type": "view"}]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)
    anonymous = no_redis.get("/v1/users/nobody/recommendations?n=5").json()
    assert anonymous["strategy"] == "degraded_popularity" and _ids(anonymous) == ["hot", "warm", "cool"]
    assert _ids(no_redis.get("/v1/users/buyer/recommendations?n=5").json()) == ["warm", "cool"]
    assert _ids(no_redis.get("/v1/users/buyer/recommendations?n=5&exclude_seen=true").json()) == ["cool"]


def test_degraded_and_live_popularity_weigh_event_types_alike(
    client: TestClient, no_redis: TestClient, rds: redis.Redis, settings: Settings
) -> None:
    """One event per type, all at one instant: both paths must score item(type) ∝ its type's weight."""
    at = time.time() - 3600
    events = [{"user_id": "u1", "item_id": f"item-{t}", "type": t, "timestamp": at,
               **({"value": 4} if t == "rating" else {})} for t in POPULARITY_WEIGHTS]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)
    top = max(POPULARITY_WEIGHTS.values())
    expected = {f"item-{t}": w / top for t, w in POPULARITY_WEIGHTS.items() if w > 0}

    live = live_state.popularity(rds, Keys.of(settings))
    live_top = max(live.values())
    assert {k: v / live_top for k, v in live.items()} == pytest.approx(expected, rel=1e-6)

    degraded = no_redis.get("/v1/users/someone-else/recommendations?n=20").json()["items"]
    assert {i["item_id"]: i["sources"]["popularity"] for i in degraded} == pytest.approx(expected, abs=1e-6)
