"""Forward-decayed popularity stays finite and correctly ranked, however short the half-life and however
far apart the events: its epoch T0 moves forward at ingest (when old) and at every rebuild."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.events.realtime import LEGACY_DECAY_EPOCH, POPULARITY_WEIGHTS
from app.events.realtime_scripts import REBASE_AFTER
from app.main import create_app
from app.settings import Settings
from app.store.keys import Keys
from app.worker import hydrate
from app.worker.load import load_snapshot
from tests.conftest import ADMIN_KEY

DAY = 86400.0


@pytest.fixture
def hourly(settings: Settings) -> Settings:
    """A one-hour popularity half-life: a year holds ~8,800 half-lives, far past 2.0 ** 1024."""
    return settings.model_copy(update={"popularity_half_life_days": 1 / 24})


@pytest.fixture
def hourly_client(hourly: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hourly), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


def _scores(rds: redis.Redis, key: str) -> dict[str, float]:
    return {m.decode(): s for m, s in rds.zrange(key, 0, -1, withscores=True)}


def _expected(events: list[dict[str, object]], t0: float, half_life_days: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in events:
        weight = POPULARITY_WEIGHTS[str(e["type"])]
        item = str(e["item_id"])
        out[item] = out.get(item, 0.0) + weight * 2.0 ** ((float(e["timestamp"]) - t0) / (half_life_days * DAY))  # type: ignore[arg-type]
    return out


def test_events_a_year_apart_with_a_short_half_life(
    hourly_client: TestClient, hourly: Settings, rds: redis.Redis
) -> None:
    keys = Keys.of(hourly)
    B = keys.bucket("old")
    assert keys.bucket("new") == B  # one bucket, one T0 (`store.live_reads` merges several)
    hourly_client.put("/v1/items/old", json={"categories": ["c"]})
    hourly_client.put("/v1/items/new", json={"categories": ["c"]})
    now = float(int(time.time()))  # whole seconds: stored exactly (timestamps keep microseconds)
    old = [{"user_id": f"u{k}", "item_id": "old", "type": "purchase", "timestamp": now - 400 * DAY + k}
           for k in range(50)]
    new = [{"user_id": "u0", "item_id": "new", "type": "view", "timestamp": now - 60}]
    for batch in (old, new):
        response = hourly_client.post("/v1/events", json={"events": batch})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(batch)

    t0 = float(rds.get(keys.popularity_epoch(B)))  # type: ignore[arg-type]
    assert t0 == pytest.approx(now - 60, abs=1.0)  # moved forward by the second batch
    expected = _expected(old + new, t0, hourly.popularity_half_life_days)
    for key in (keys.popularity(B), keys.popularity_category("c", B)):
        scores = _scores(rds, key)
        assert all(math.isfinite(s) for s in scores.values())
        assert scores["new"] == pytest.approx(expected["new"], rel=1e-12)
        assert scores["old"] == pytest.approx(expected["old"], abs=1e-300)  # decayed to nothing
        assert scores["new"] > scores["old"]
    ranked = hourly_client.get("/v1/users/someone-new/recommendations?n=2").json()["items"]
    assert [r["item_id"] for r in ranked] == ["new", "old"]


def test_sets_written_before_t0_was_stored_are_rescaled(
    client: TestClient, settings: Settings, rds: redis.Redis
) -> None:
    """An upgrade finds scores relative to 2024-01-01 and no stored T0: the first ingest rescales them
    (the exponent from 2024 is well past REBASE_AFTER half-lives of 7 days) before adding its own."""
    keys = Keys.of(settings)
    B = keys.bucket("a")
    assert keys.bucket("a1") == B  # the rescale is per bucket: both items in one
    client.put("/v1/items/a", json={"categories": ["shoes"]})
    client.put("/v1/items/a1", json={"categories": ["shoes"]})
    now = float(int(time.time()))  # whole seconds: stored exactly (timestamps keep microseconds)
    per_second = 1 / (settings.popularity_half_life_days * DAY)
    assert (now - LEGACY_DECAY_EPOCH) * per_second > REBASE_AFTER
    legacy = 2.0 ** ((now - DAY - LEGACY_DECAY_EPOCH) * per_second)  # one view of `a` a day ago
    for key in (keys.popularity(B), keys.popularity_category("shoes", B)):
        rds.zadd(key, {"a": legacy})
    rds.sadd(keys.popularity_categories(B), "shoes")
    rds.delete(keys.popularity_epoch(B))

    event = {"user_id": "u", "item_id": "a1", "type": "view", "timestamp": now}
    assert client.post("/v1/events", json={"events": [event]}).json()["accepted"] == 1
    assert float(rds.get(keys.popularity_epoch(B))) == pytest.approx(now, abs=1e-3)  # type: ignore[arg-type]
    for key in (keys.popularity(B), keys.popularity_category("shoes", B)):
        scores = _scores(rds, key)
        assert scores["a1"] == pytest.approx(1.0, rel=1e-12)
        assert scores["a"] == pytest.approx(2.0 ** -(DAY * per_second), rel=1e-9)


def test_rebuild_moves_t0_to_now_and_drops_emptied_sets(
    client: TestClient, settings: Settings, rds: redis.Redis, pg: psycopg.Connection
) -> None:
    keys = Keys.of(settings)
    B = keys.bucket("x")
    assert keys.bucket("y5") == keys.bucket("z2") == B  # one bucket: one T0, one set of categories
    client.post("/v1/items", json={"items": [{"item_id": "x", "categories": ["kept", "Apparel:Shoes"]},
                                             {"item_id": "y5", "categories": ["gone"]}]})
    now = float(int(time.time()))  # whole seconds: stored exactly (timestamps keep microseconds)
    events = [{"user_id": "keeper", "item_id": "x", "type": "add_to_cart", "timestamp": now - 3 * DAY},
              {"user_id": "keeper", "item_id": "x", "type": "view", "timestamp": now - 100},
              {"user_id": "leaver", "item_id": "y5", "type": "purchase", "timestamp": now - DAY}]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 3
    assert rds.exists(keys.popularity_category("gone", B))
    assert client.delete("/v1/users/leaver").status_code == 200

    snapshot = load_snapshot(pg, now + 10)
    hydrate.refresh_realtime(rds, keys, settings, snapshot)

    t0 = float(rds.get(keys.popularity_epoch(B)))  # type: ignore[arg-type]
    assert t0 == now + 10
    expected = _expected(events[:2], t0, settings.popularity_half_life_days)
    assert _scores(rds, keys.popularity(B)) == {"x": pytest.approx(expected["x"], rel=1e-12)}
    for category in ("kept", "Apparel:Shoes"):  # a name with a colon is a name like any other
        assert _scores(rds, keys.popularity_category(category, B)) == {"x": pytest.approx(expected["x"], rel=1e-12)}
    assert not rds.exists(keys.popularity_category("gone", B))
    assert rds.smembers(keys.popularity_categories(B)) == {b"kept", b"Apparel:Shoes"}

    later = {"user_id": "keeper", "item_id": "x", "type": "view", "timestamp": now + 5}
    assert client.post("/v1/events", json={"events": [later]}).json()["accepted"] == 1
    assert float(rds.get(keys.popularity_epoch(B))) == t0  # a recent T0 is kept
    expected = _expected([*events[:2], later], t0, settings.popularity_half_life_days)
    assert rds.zscore(keys.popularity(B), "x") == pytest.approx(expected["x"], rel=1e-12)


def test_increments_ingested_while_a_rebuild_runs_survive_its_swap(
    client: TestClient, settings: Settings, rds: redis.Redis, pg: psycopg.Connection
) -> None:
    """The rebuild's sets come from its snapshot; events ingested after it (a rebuild of a large shop
    runs for minutes) are added to them at the swap, not overwritten until the next rebuild."""
    keys = Keys.of(settings)
    B = keys.bucket("x")
    assert keys.bucket("y5") == keys.bucket("z2") == B  # one bucket: one T0, one set of categories
    client.post("/v1/items", json={"items": [{"item_id": "x", "categories": ["shoes", "shoes:staging"]},
                                             {"item_id": "y5", "categories": ["shoes"]},
                                             {"item_id": "z2", "categories": ["new-in"]}]})
    now = float(int(time.time()))  # a category may be named like another's key suffix: "shoes:staging"
    before = [{"user_id": "a", "item_id": "x", "type": "purchase", "timestamp": now - 2 * DAY},
              {"user_id": "b", "item_id": "y5", "type": "view", "timestamp": now - DAY}]
    assert client.post("/v1/events", json={"events": before}).json()["accepted"] == 2
    # a rebuild that died once left staging sets behind: they must not leak into this one
    rds.zadd(keys.popularity_staged(keys.popularity_category("shoes", B), B), {"stale": 99.0})
    rds.zadd(keys.popularity_staged(keys.popularity_category("discontinued", B), B), {"stale": 99.0})
    rds.sadd(keys.popularity_categories(B), "discontinued")

    hydrate.mark_popularity(rds, keys)
    snapshot = load_snapshot(pg, now)
    during = [{"user_id": "c", "item_id": "y5", "type": "add_to_cart", "timestamp": now + 1},
              {"user_id": "c", "item_id": "z2", "type": "view", "timestamp": now + 2}]
    assert client.post("/v1/events", json={"events": during}).json()["accepted"] == 2
    hydrate.refresh_realtime(rds, keys, settings, snapshot)

    t0 = float(rds.get(keys.popularity_epoch(B)))  # type: ignore[arg-type]
    assert t0 == now
    expected = _expected(before + during, t0, settings.popularity_half_life_days)
    assert _scores(rds, keys.popularity(B)) == {item: pytest.approx(s, rel=1e-9) for item, s in expected.items()}
    assert _scores(rds, keys.popularity_category("shoes", B)) == {
        "x": pytest.approx(expected["x"], rel=1e-9), "y5": pytest.approx(expected["y5"], rel=1e-9)}
    assert _scores(rds, keys.popularity_category("new-in", B)) == {"z2": pytest.approx(expected["z2"], rel=1e-9)}
    assert _scores(rds, keys.popularity_category("shoes:staging", B)) == {"x": pytest.approx(expected["x"], rel=1e-9)}
    assert not rds.exists(keys.popularity_category("discontinued", B))
    assert {m.decode() for m in rds.smembers(keys.popularity_categories(B))} == {"shoes", "shoes:staging", "new-in"}
    assert not rds.keys(keys.popularity_mark("*", B)) + rds.keys(keys.popularity_staged("*", B))  # nothing left behind

    # without a mark (Redis lost it, or ingest moved T0 meanwhile) the swap is the plain recomputation
    snapshot = load_snapshot(pg, now + 10)
    hydrate.refresh_realtime(rds, keys, settings, snapshot)
    expected = _expected(before + during, now + 10, settings.popularity_half_life_days)
    assert _scores(rds, keys.popularity(B)) == {item: pytest.approx(s, rel=1e-9) for item, s in expected.items()}
