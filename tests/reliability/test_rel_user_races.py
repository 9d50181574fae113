"""A merge or erasure racing ingest never leaves events of a deleted user, a rebuild survives orphans
anyway, and a merge keeps history entries pushed while it runs."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import make_async_engine
from app.events import service as events_service
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.codec import decode_history, encode_history
from app.store.keys import Keys
from app.users import service as users_service
from app.worker.load import load_snapshot
from app.worker.pipeline import rebuild
from tests.races import BeforeFirstWrite, BeforeFirstWriteOnCluster, lock_waits, until

T = 1_790_000_000
ORPHANS = "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = e.user_id)"


def _events(user: str, n: int, item: str, start: int = 0) -> list[dict[str, object]]:
    return [{"event_id": f"{user}-{item}-{start + k}", "user_id": user, "item_id": item, "type": "view",
             "timestamp": T + start + k} for k in range(n)]


@pytest.mark.parametrize("size", [1, 40], ids=["pipelined", "copy"])
@pytest.mark.parametrize("operation", ["merge", "erase"])
def test_no_event_commits_for_a_user_a_merge_or_erasure_deletes(
    settings: Settings, pg: psycopg.Connection, operation: str, size: int
) -> None:
    """Held at a known point: the batch has passed its user insert (the user existed) and waits on an
    item row another transaction holds; the merge or erasure deletes the user meanwhile; then the
    batch goes on. Unserialised, its events commit for a user row that is gone."""

    async def race() -> None:
        engine = make_async_engine(settings.database_url or "")
        redis_client = make_async_redis(settings.redis_url or "", cluster=settings.redis_cluster)
        keys = Keys.of(settings)
        try:
            # the anonymous shopper exists, and this process knows it (a COPY batch skips its insert)
            seeded = await events_service.ingest(engine, redis_client, keys, settings, _events("anon", 40, "seed"))
            assert seeded.accepted == 40
            await events_service.ingest(engine, redis_client, keys, settings, _events("known", 1, "seed"))
            with psycopg.connect(settings.database_url or "") as blocker:
                blocker.execute("INSERT INTO items (item_id) VALUES ('held')")  # uncommitted
                batch = asyncio.create_task(events_service.ingest(
                    engine, redis_client, keys, settings, _events("anon", size, "held", start=100)))
                await until(lambda: lock_waits(pg) == 1, "the batch waiting on the held item")
                deleting = asyncio.create_task(_delete(engine, operation))
                await until(lambda: deleting.done() or lock_waits(pg) == 2,
                            "the merge or erasure done, or waiting for the batch")
                blocker.rollback()
            assert (await batch).accepted == size
            await deleting
        finally:
            await redis_client.aclose()
            await engine.dispose()

    asyncio.run(race())
    assert pg.execute(ORPHANS).fetchone() == (0,)
    assert load_snapshot(pg).orphan_events == 0
    counts = dict(pg.execute("SELECT user_id, count(*) FROM events GROUP BY user_id").fetchall())
    if operation == "merge":  # the batch's events follow the shopper (or wait and recreate them)
        assert counts.get("known", 0) + counts.get("anon", 0) == 1 + 40 + size
    else:  # the erasure took the batch's events with it
        assert "anon" not in counts


async def _delete(engine: AsyncEngine, operation: str) -> None:
    async with async_sessionmaker(engine, class_=AsyncSession)() as session:
        if operation == "merge":
            await users_service.merge_rows(session, "known", "anon")
        else:
            await users_service.erase_user_rows(session, "anon")
        await session.commit()


def _shop(client: TestClient, users: list[str]) -> None:
    items = [{"item_id": f"sku-{i}", "title": f"thing {i}", "categories": [f"cat{i % 3}"]} for i in range(20)]
    assert client.post("/v1/items", json={"items": items}).status_code == 200
    events = [{"user_id": users[k % len(users)], "item_id": f"sku-{(k * 7 + k // len(users)) % 20}",
               "type": ["view", "view", "add_to_cart", "purchase"][k % 4], "timestamp": T + k * 60}
              for k in range(600)]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 600


def test_concurrent_merges_and_ingest_leave_the_next_rebuild_green(
    client: TestClient, settings: Settings, pg: psycopg.Connection
) -> None:
    known = [f"known-{k}" for k in range(12)]
    anons = [f"anon-{k}" for k in range(12)]
    _shop(client, known + anons)

    def merge(k: int) -> int:
        return client.post(f"/v1/users/{known[k]}/merge", json={"from_user_id": anons[k]}).status_code

    def ingest(k: int) -> int:
        batch = _events(anons[k], 1 + 39 * (k % 2), f"sku-{k}", start=10_000)
        return client.post("/v1/events", json={"events": batch}).status_code

    with ThreadPoolExecutor(8) as pool:
        merges = [pool.submit(merge, k) for k in range(len(known))]
        ingests = [pool.submit(ingest, k) for k in range(len(anons))]
        assert {f.result() for f in merges} == {200} and {f.result() for f in ingests} == {200}

    assert pg.execute(ORPHANS).fetchone() == (0,)
    run = rebuild(settings, trigger="test")
    assert run.metrics["orphan_events"] == 0
    assert pg.execute("SELECT status FROM model_runs WHERE id = %s", (run.run_id,)).fetchone() == ("succeeded",)


def test_a_rebuild_counts_orphan_events_instead_of_failing(
    client: TestClient, settings: Settings, pg: psycopg.Connection
) -> None:
    _shop(client, [f"shopper-{k}" for k in range(20)])
    # an event whose user row is gone (a writer that took no lock, a hand-made DELETE)
    pg.execute("INSERT INTO users (user_id) VALUES ('ghost')")
    pg.execute("INSERT INTO events (event_id, user_id, item_id, type, ts) VALUES ('g1', 'ghost', 'sku-1',"
               " 'view', to_timestamp(%s))", (T,))
    pg.execute("DELETE FROM users WHERE user_id = 'ghost'")

    run = rebuild(settings, trigger="test")
    assert run.metrics["orphan_events"] == 1
    stored = pg.execute("SELECT status, metrics->'orphan_events' FROM model_runs WHERE id = %s",
                        (run.run_id,)).fetchone()
    assert stored == ("succeeded", 1)


def test_merge_state_keeps_an_entry_pushed_between_its_read_and_its_write(
    settings: Settings, rds: redis.Redis
) -> None:
    keys = Keys.of(settings)
    rds.rpush(keys.history("known"), encode_history(T + 5, "view", "k1"))
    rds.rpush(keys.history("anon"), encode_history(T + 3, "view", "a1"))
    rds.sadd(keys.purchased("anon"), "a-bought")
    pushed = encode_history(T + 9, "purchase", "pushed")

    async def push_meanwhile() -> None:  # ingest's real-time update lands mid-merge
        rds.lpush(keys.history("known"), pushed)

    async def merge() -> None:
        held = BeforeFirstWriteOnCluster if settings.redis_cluster else BeforeFirstWrite
        client = held.from_url(settings.redis_url or "")
        client.step = push_meanwhile
        try:
            await users_service.merge_state(client, keys, "known", "anon", settings.history_length)
        finally:
            await client.aclose()

    asyncio.run(merge())
    history = [decode_history(e)[3] for e in rds.lrange(keys.history("known"), 0, -1)]
    assert history == ["pushed", "k1", "a1"]
    assert rds.smembers(keys.purchased("known")) == {b"a-bought"}
    assert not rds.exists(keys.history("anon"), keys.purchased("anon"))
