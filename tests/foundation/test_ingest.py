from __future__ import annotations

import time

import psycopg
import redis
from fastapi.testclient import TestClient

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
    keys = Keys(settings.redis_prefix)
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
    assert rds.zscore(keys.popularity(), "i1") is not None
    assert rds.zscore(keys.popularity_category("shoes"), "i1") is not None
    assert rds.hexists(keys.item_meta(), "i2")  # created on the fly, eligible at once


def test_history_is_capped(client: TestClient, rds: redis.Redis, settings) -> None:  # type: ignore[no-untyped-def]
    events = [{"user_id": "u1", "item_id": f"i{k}", "type": "view"} for k in range(settings.history_length + 30)]
    client.post("/v1/events", json={"events": events})
    assert rds.llen(Keys(settings.redis_prefix).history("u1")) == settings.history_length
