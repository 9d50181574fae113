"""Writes that Redis missed while unreachable are repaired by the next rebuild.

The API is cut off from Redis by a dead port while the shared Redis keeps its data and hydration
sentinel, as after a network partition or a restart with persistence: nothing but the skips recorded
in Postgres tells the rebuild that Redis lags behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from app.store.codec import decode_item_meta
from app.store.keys import Keys
from app.worker.pipeline import rebuild
from app.worker.repair import needed
from tests.conftest import ADMIN_KEY
from tests.serving.conftest import load_shop

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def cut_off(settings: Settings) -> Iterator[TestClient]:
    """The API with Redis unreachable (a closed port), same Postgres."""
    app = create_app(settings.model_copy(update={"redis_url": DEAD_REDIS}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


def test_the_next_rebuild_repairs_what_redis_missed_during_an_outage(
    client: TestClient, cut_off: TestClient, settings: Settings, rds: redis.Redis,
    pg: psycopg.Connection[tuple[object, ...]], database_url: str,
) -> None:
    loaded = load_shop(client, settings, n_users=40, n_items=20)
    keys = Keys.of(settings)
    sold_out = loaded.shop.items[0]
    buyer = loaded.shop.users[1]["user_id"]
    assert rds.exists(keys.hydrated()) and not needed(database_url)

    # the outage: every write is committed to Postgres, none reaches Redis
    gone = {k: v for k, v in sold_out.items() if k != "item_id"} | {"available": False}
    assert cut_off.put(f"/v1/items/{sold_out['item_id']}", json=gone).status_code == 200
    fresh = {"title": "Outage lamp", "categories": ["outage-only"], "price": 12.0}
    assert cut_off.put("/v1/items/outage-lamp", json=fresh).status_code == 200
    posted = cut_off.post("/v1/events", json={"events": [
        {"user_id": buyer, "item_id": "outage-lamp", "type": "purchase", "event_id": "during-outage"}]}).json()
    assert posted["accepted"] == 1 and posted["realtime_updated"] is False
    assert needed(database_url)
    # Redis came back as it was: stale
    meta = decode_item_meta(rds.hget(keys.item_meta_of(sold_out["item_id"]), sold_out["item_id"]))
    assert meta is not None and meta["a"] is True
    assert not rds.hexists(keys.item_meta_of("outage-lamp"), "outage-lamp")
    assert not any(b"outage-lamp" in e for e in rds.lrange(keys.history(buyer), 0, -1))

    rebuild(settings, trigger="test")

    meta = decode_item_meta(rds.hget(keys.item_meta_of(sold_out["item_id"]), sold_out["item_id"]))
    assert meta is not None and meta["a"] is False
    lamp = decode_item_meta(rds.hget(keys.item_meta_of("outage-lamp"), "outage-lamp"))
    assert lamp is not None and lamp["t"] == "Outage lamp"
    assert any(b"outage-lamp" in e for e in rds.lrange(keys.history(buyer), 0, -1))
    assert rds.sismember(keys.purchased(buyer), "outage-lamp")
    # served as Postgres has it: the new item is recommendable, the sold-out one is not, the buyer's
    # purchase is not offered back to them
    shopper = client.get("/v1/users/someone-new/recommendations?n=5&category=outage-only").json()
    assert [i["item_id"] for i in shopper["items"]] == ["outage-lamp"]
    anyone = client.get("/v1/users/someone-new/recommendations?n=100").json()
    assert sold_out["item_id"] not in {i["item_id"] for i in anyone["items"]}
    mine = client.get(f"/v1/users/{buyer}/recommendations?n=100").json()
    assert "outage-lamp" not in {i["item_id"] for i in mine["items"]}
    assert not needed(database_url)  # repaired: the skips it covered are gone

