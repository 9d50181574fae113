"""Ingest skips users and items it stored before; deletions of any kind make it forget them."""

from __future__ import annotations

import asyncio

import psycopg
from fastapi.testclient import TestClient

from app.db import make_async_engine
from app.events import service
from app.events.schemas import IngestResult
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys


def _view(event_id: str, user: str, item: str = "i1") -> dict[str, object]:
    return {"event_id": event_id, "user_id": user, "item_id": item, "type": "view"}


def _has_user(pg: psycopg.Connection[tuple[object, ...]], user_id: str) -> bool:
    return pg.execute("SELECT 1 FROM users WHERE user_id = %s", (user_id,)).fetchone() is not None


def test_an_erased_user_who_comes_back_is_stored_again(client: TestClient, pg: psycopg.Connection) -> None:
    assert client.post("/v1/events", json={"events": [_view("a1", "alice")]}).json()["accepted"] == 1
    assert client.delete("/v1/users/alice").status_code in (200, 204)
    assert not _has_user(pg, "alice")

    assert client.post("/v1/events", json={"events": [_view("a2", "alice")]}).json()["accepted"] == 1
    assert _has_user(pg, "alice")
    assert client.get("/v1/users/alice").status_code == 200
    assert client.delete("/v1/users/alice").status_code in (200, 204)  # erasable again: nothing orphaned
    assert pg.execute("SELECT count(*) FROM events WHERE user_id = 'alice'").fetchone() == (0,)


def test_a_merged_away_user_who_comes_back_is_stored_again(client: TestClient, pg: psycopg.Connection) -> None:
    client.post("/v1/events", json={"events": [_view("m1", "anon-7"), _view("m2", "bob")]})
    assert client.post("/v1/users/bob/merge", json={"from_user_id": "anon-7"}).status_code == 200
    assert not _has_user(pg, "anon-7")

    client.post("/v1/events", json={"events": [_view("m3", "anon-7")]})
    assert _has_user(pg, "anon-7")


def test_items_removed_behind_the_api_are_created_again(client: TestClient, pg: psycopg.Connection) -> None:
    client.post("/v1/events", json={"events": [_view("x1", "carol", "lamp")]})
    pg.execute("DELETE FROM events")
    pg.execute("DELETE FROM items")
    pg.commit()

    client.post("/v1/events", json={"events": [_view("x2", "carol", "lamp")]})
    assert pg.execute("SELECT count(*) FROM items WHERE item_id = 'lamp'").fetchone() == (1,)


def test_every_deleting_statement_moves_the_counter(pg: psycopg.Connection) -> None:
    def counter() -> object:
        return pg.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM id_deletions").fetchone()

    before = counter()
    pg.execute("DELETE FROM users WHERE false")
    after_delete = counter()
    pg.execute("TRUNCATE items")
    assert before != after_delete != counter()


def test_a_batch_mixing_new_and_stored_events_stores_only_the_new(client: TestClient, pg: psycopg.Connection) -> None:
    client.post("/v1/events", json={"events": [_view(f"s{k}", "dave") for k in range(5)]})
    body = client.post("/v1/events", json={"events": [_view(f"s{k}", "dave") for k in range(3, 8)]}).json()
    assert (body["accepted"], body["duplicates"]) == (3, 2)
    assert sorted(body["duplicate_event_ids"]) == ["s3", "s4"]
    assert pg.execute("SELECT count(*) FROM events").fetchone() == (8,)


def test_an_empty_batch_is_422(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": []})
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


def test_concurrent_overlapping_batches_store_each_event_once(settings: Settings, pg: psycopg.Connection) -> None:
    """Both batches COPY at once; the later one meets the unique index, waits, and redoes its batch."""
    first = [_view(f"c{k}", f"user{k % 7}", f"item{k % 11}") for k in range(0, 600)]
    second = [_view(f"c{k}", f"user{k % 7}", f"item{k % 11}") for k in range(400, 1000)]

    async def run() -> list[IngestResult]:
        assert settings.database_url
        engine = make_async_engine(settings.database_url, pool_size=2)
        redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster)
        keys = Keys.of(settings)
        try:
            return list(await asyncio.gather(
                *(service.ingest(engine, redis, keys, settings, batch) for batch in (first, second))
            ))
        finally:
            await redis.aclose()
            await engine.dispose()

    a, b = asyncio.run(run())
    assert a.accepted + b.accepted == 1000
    assert a.duplicates + b.duplicates == 200
    assert pg.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (1000, 1000)
