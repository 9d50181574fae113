"""Re-hydrating a flushed Redis merges each shopper's history with what ingest pushed meanwhile."""

from __future__ import annotations

import psycopg
import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store.codec import decode_history
from app.store.keys import Keys
from app.worker import hydrate
from app.worker.load import load_snapshot

T = 1_790_000_000


def _items(rds: redis.Redis, keys: Keys, user: str) -> list[str]:
    return [decode_history(e)[3] for e in rds.lrange(keys.history(user), 0, -1)]


def _flush(rds: redis.Redis, prefix: str) -> None:
    for key in rds.scan_iter(match=f"{prefix}*"):
        rds.delete(key)


def test_events_ingested_during_hydration_are_kept_once(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection
) -> None:
    keys = Keys.of(settings)
    before = [{"user_id": "u", "item_id": f"old{k}", "type": "view", "timestamp": T + k} for k in range(3)]
    assert client.post("/v1/events", json={"events": before}).json()["accepted"] == 3
    _flush(rds, settings.redis_prefix)  # Redis restarted without persistence
    # after the flush: one event the snapshot will also hold, then the snapshot, then one it misses
    both = {"user_id": "u", "item_id": "both", "type": "view", "timestamp": T + 10}
    assert client.post("/v1/events", json={"events": [both]}).json()["accepted"] == 1
    snapshot = load_snapshot(pg)
    late = {"user_id": "u", "item_id": "late", "type": "add_to_cart", "timestamp": T + 20}
    assert client.post("/v1/events", json={"events": [late]}).json()["accepted"] == 1

    hydrate.refresh_realtime(rds, keys, settings, snapshot)
    assert _items(rds, keys, "u") == ["late", "both", "old2", "old1", "old0"]
    assert rds.smembers(keys.seen("u")) == {b"late", b"both", b"old2", b"old1", b"old0"}

    rds.delete(keys.hydrated())  # hydrating again adds nothing
    hydrate.refresh_realtime(rds, keys, settings, snapshot)
    assert _items(rds, keys, "u") == ["late", "both", "old2", "old1", "old0"]


def test_the_merged_history_keeps_the_cap(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection
) -> None:
    capped = settings.model_copy(update={"history_length": 10})
    keys = Keys.of(settings)
    old = [{"user_id": "u", "item_id": f"old{k}", "type": "view", "timestamp": T + k} for k in range(8)]
    assert client.post("/v1/events", json={"events": old}).json()["accepted"] == 8
    _flush(rds, settings.redis_prefix)
    snapshot = load_snapshot(pg)
    new = [{"user_id": "u", "item_id": f"new{k}", "type": "view", "timestamp": T + 100 + k} for k in range(5)]
    assert client.post("/v1/events", json={"events": new}).json()["accepted"] == 5

    hydrate.refresh_realtime(rds, keys, capped, snapshot)
    assert _items(rds, keys, "u") == [f"new{k}" for k in range(4, -1, -1)] + [f"old{k}" for k in range(7, 2, -1)]
