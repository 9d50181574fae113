from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.events.store import SMALL_BATCH
from app.settings import Settings
from app.store.keys import Keys


def _events(n: int, prefix: str = "e") -> list[dict[str, object]]:
    now = time.time()
    return [
        {"event_id": f"{prefix}{k}", "user_id": f"u{k % 50}", "item_id": f"i{k % 80}",
         "type": ("view", "add_to_cart", "purchase")[k % 3], "timestamp": now - k}
        for k in range(n)
    ]


def _count(pg: psycopg.Connection[tuple[object, ...]], table: str) -> int:
    row = pg.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_batch_is_stored_once_and_duplicates_are_reported(client: TestClient, pg: psycopg.Connection) -> None:
    events = _events(10_000)
    first = client.post("/v1/events", json={"events": events})
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 10_000
    assert _count(pg, "events") == 10_000
    assert _count(pg, "users") == 50 and _count(pg, "items") == 80

    again = client.post("/v1/events", json={"events": events})
    body = again.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (0, 10_000, 0)
    assert _count(pg, "events") == 10_000


def test_one_bad_event_does_not_sink_the_batch(client: TestClient, pg: psycopg.Connection) -> None:
    events = [
        {"event_id": "ok1", "user_id": "u1", "item_id": "i1", "type": "view"},
        {"event_id": "bad", "user_id": "u1", "item_id": "i1", "type": "teleport"},
        {"event_id": "ok2", "user_id": "u2", "item_id": "i2", "type": "purchase", "price": 9.5},
        {"user_id": "u3", "type": "view"},
        {"event_id": "future", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": time.time() + 86400},
    ]
    body = client.post("/v1/events", json={"events": events}).json()
    assert body["accepted"] == 2 and body["rejected"] == 3
    errors = {e["index"]: e for e in body["errors"]}
    assert errors[1]["event_id"] == "bad" and "type" in errors[1]["error"]
    assert "item_id is required" in errors[3]["error"]
    assert "future" in errors[4]["error"]
    assert _count(pg, "events") == 2


def test_duplicates_inside_one_batch(client: TestClient, pg: psycopg.Connection) -> None:
    ev = {"event_id": "same", "user_id": "u1", "item_id": "i1", "type": "view"}
    body = client.post("/v1/events", json={"events": [ev, ev]}).json()
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    assert body["duplicate_event_ids"] == ["same"]


def test_timestamps_iso_and_epoch(client: TestClient, pg: psycopg.Connection) -> None:
    events = [
        {"event_id": "iso", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": "2024-05-01T10:00:00Z"},
        {"event_id": "naive", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": "2024-05-01T10:00:00"},
        {"event_id": "epoch", "user_id": "u1", "item_id": "i1", "type": "view", "timestamp": 1714557600},
    ]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 3
    rows = pg.execute("SELECT event_id, extract(epoch FROM ts) FROM events ORDER BY event_id").fetchall()
    assert {r[0]: float(r[1]) for r in rows} == {"epoch": 1714557600.0, "iso": 1714557600.0, "naive": 1714557600.0}


def test_realtime_state_follows_each_event(client: TestClient, rds: redis.Redis, settings) -> None:  # type: ignore[no-untyped-def]
    keys = Keys.of(settings)
    now = time.time()
    client.post("/v1/items", json={"items": [{"item_id": "i1", "categories": ["shoes"], "title": "Runner"}]})
    events = [
        {"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": now - 10},
        {"user_id": "u1", "item_id": "i2", "type": "purchase", "timestamp": now - 5},
    ]
    assert client.post("/v1/events", json={"events": events}).json()["realtime_updated"] is True
    history = [h.decode() for h in rds.lrange(keys.history("u1"), 0, -1)]
    assert [(h.split("|")[1], h.split("|")[3]) for h in history] == [("purchase", "i2"), ("view", "i1")]
    assert rds.smembers(keys.purchased("u1")) == {b"i2"}
    b = keys.bucket("i1")
    assert rds.zscore(keys.popularity(b), "i1") is not None
    assert rds.zscore(keys.popularity_category("shoes", b), "i1") is not None
    assert rds.hexists(keys.item_meta_of("i2"), "i2")  # created on the fly, eligible at once


def test_history_is_capped(client: TestClient, rds: redis.Redis, settings) -> None:  # type: ignore[no-untyped-def]
    events = [{"user_id": "u1", "item_id": f"i{k}", "type": "view"} for k in range(settings.history_length + 30)]
    client.post("/v1/events", json={"events": events})
    assert rds.llen(Keys.of(settings).history("u1")) == settings.history_length


@pytest.mark.parametrize("size", [1, SMALL_BATCH, SMALL_BATCH + 1, 3 * SMALL_BATCH])
def test_both_write_paths_store_the_same(
    client: TestClient, pg: psycopg.Connection, rds: redis.Redis, settings: Settings, size: int
) -> None:
    """Small batches go as pipelined INSERTs, larger ones by COPY: the stored rows, the duplicates, the
    users and items created on the fly and the items' serving metadata come out the same."""
    keys = Keys.of(settings)
    client.put("/v1/items/known", json={"categories": ["c"]})
    old = [{"event_id": f"old{k}", "user_id": "u0", "item_id": "known", "type": "view"} for k in range(size // 2)]
    if old:
        assert client.post("/v1/events", json={"events": old}).json()["accepted"] == len(old)
    new = range(size - len(old))
    events = old + [
        {"event_id": f"new{k:03d}", "user_id": f"u{k % 3}", "item_id": f"fresh{k % 4}", "type": "purchase",
         "price": 2.5, "value": 1, "session_id": "s", "recommendation_id": "hybrid.x",
         "properties": {"k": k}, "timestamp": f"2023-11-14T22:13:{k % 60:02d}.000001Z"}
        for k in new
    ]
    body = client.post("/v1/events", json={"events": events}).json()
    assert (body["accepted"], body["duplicates"]) == (len(new), len(old))
    assert sorted(body["duplicate_event_ids"]) == sorted(e["event_id"] for e in old)
    stored = pg.execute("SELECT event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id,"
                        " properties FROM events WHERE event_id LIKE 'new%' ORDER BY event_id").fetchall()
    assert stored == [
        (f"new{k:03d}", f"u{k % 3}", f"fresh{k % 4}", "purchase", 1.0, 2.5,
         datetime(2023, 11, 14, 22, 13, k % 60, 1, tzinfo=UTC), "s", "hybrid.x", {"k": k})
        for k in new
    ]
    fresh = {f"fresh{k}" for k in range(min(4, len(new)))}
    assert {r[0] for r in pg.execute("SELECT item_id FROM items")} == {"known"} | fresh
    assert {r[0] for r in pg.execute("SELECT user_id FROM users")} == {f"u{k % 3}" for k in new} | ({"u0"} if old else set())
    assert {m.decode() for b in range(keys.buckets) for m in rds.hkeys(keys.item_meta(b))} == {"known"} | fresh
    assert rds.hget(keys.recommendation_stats("hybrid"), "purchase") == str(len(new)).encode()
