"""An erasure made while a rebuild runs stays erased, and erasures at once all apply.

A rebuild reads Postgres at one instant and publishes minutes later; the erasures below happen in
between, at known points: after its snapshot (the propensity stage stands in for the minutes of
work), and with the erasure's transaction still open when the rebuild reaches its pointer flip.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import make_async_engine
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys
from app.users import service as users_service
from app.worker import pipeline
from tests.races import BeforeFirstWrite, lock_waits
from tests.reliability.test_rel_privacy import USER, _mentions, _shop_with_user

Build = Any


@pytest.fixture
def erase_after_snapshot(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Runs each callable put in the list once the rebuild has its snapshot, before it publishes."""
    steps: list[Any] = []
    build = pipeline.build_propensity

    def build_then_erase(snapshot: Any, settings: Settings) -> Build:
        assert USER in snapshot.log.user_ids.tolist(), "the snapshot should hold the user"
        result = build(snapshot, settings)
        for step in steps:
            step()
        return result

    monkeypatch.setattr(pipeline, "build_propensity", build_then_erase)
    yield steps


def _version_state(rds: redis.Redis, keys: Keys, version: str) -> tuple[int, bytes]:
    """(fields in the version's propensity hashes, its user id table)."""
    parts = (rds.hget(keys.model(version, "meta"), "user_parts") or b"").decode().split(",")
    return sum(int(rds.hlen(keys.model(version, p))) for p in parts if p), rds.get(keys.model(version, "users")) or b""


def test_an_erasure_during_a_rebuild_stays_erased(
    client: TestClient, rds: redis.Redis, settings: Settings, erase_after_snapshot: list[Any]
) -> None:
    """Propensity, audiences, lookalikes, the id table and (Redis being empty: hydrated) the history."""
    _shop_with_user(client)
    erase_after_snapshot.append(lambda: client.delete(f"/v1/users/{USER}").raise_for_status())
    run = pipeline.rebuild(settings, trigger="test")

    assert _mentions(rds, settings.redis_prefix, USER) == []
    fields, table = _version_state(rds, Keys.of(settings), run.version)
    assert fields > 40 and table.count(b"\n") == 40, "everyone else is still published"


def test_an_erasure_in_flight_at_the_flip_is_waited_for(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection[tuple[object, ...]],
    erase_after_snapshot: list[Any],
) -> None:
    """The erasure cleared Redis (before the new version existed) but has not committed its tombstone
    when the rebuild reaches the pointer flip: the rebuild must wait for it, not miss it."""
    _shop_with_user(client)
    cleared, commit = threading.Event(), threading.Event()

    def erase_and_hold() -> None:
        async def run() -> None:
            engine = make_async_engine(settings.database_url or "")
            client_ = make_async_redis(settings.redis_url or "")
            try:
                async with async_sessionmaker(engine, class_=AsyncSession)() as session:
                    await users_service.erase_user_rows(session, USER)
                    await users_service.erase_user_state(client_, Keys.of(settings), USER)
                    cleared.set()
                    await asyncio.to_thread(commit.wait, 60)
                    await session.commit()
            finally:
                await client_.aclose()
                await engine.dispose()

        asyncio.run(run())

    eraser = threading.Thread(target=erase_and_hold)
    erase_after_snapshot.append(lambda: (eraser.start(), cleared.wait(30)))
    rebuilding = threading.Thread(target=lambda: results.append(pipeline.rebuild(settings, trigger="test")))
    results: list[pipeline.RunResult] = []
    rebuilding.start()
    # commit once the rebuild waits at its flip (fenced) or has published (unfenced)
    while not (lock_waits(pg) >= 1 or not rebuilding.is_alive()):
        rebuilding.join(0.01)
    commit.set()
    eraser.join(60)
    rebuilding.join(120)

    (run,) = results
    assert _mentions(rds, settings.redis_prefix, USER) == []
    assert _version_state(rds, Keys.of(settings), run.version)[0] > 40


def test_concurrent_erasures_all_apply(settings: Settings, rds: redis.Redis) -> None:
    """Every erasure holds its first write until all have read: a GET-then-SET of the id table would
    then write back the others' ids."""
    keys = Keys.of(settings)
    users = [f"gone-{k}" for k in range(6)]
    stays = ["stays-a", "stays-b"]
    rds.zadd(keys.model_versions(), {"v1": 1.0})
    rds.hset(keys.model("v1", "meta"), mapping={"user_parts": "user_nn", "user_zsets": ""})
    rds.hset(keys.model("v1", "user_nn"), mapping={u: b"\x00" for u in users + stays})
    rds.set(keys.model("v1", "users"), "\n".join([stays[0], *users, stays[1]]).encode())

    async def erase_all() -> None:
        barrier = asyncio.Barrier(len(users))
        clients = [BeforeFirstWrite.from_url(settings.redis_url or "") for _ in users]
        for c in clients:
            c.step = barrier.wait
        try:
            await asyncio.gather(*(users_service.erase_user_state(c, keys, u) for c, u in zip(clients, users, strict=True)))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    asyncio.run(erase_all())
    assert rds.get(keys.model("v1", "users")) == "\n".join([stays[0], *[""] * len(users), stays[1]]).encode()
    assert set(rds.hkeys(keys.model("v1", "user_nn"))) == {s.encode() for s in stays}
