"""The rebuild pipeline's guarantees: failures keep the old version, the lock, re-hydration."""

from __future__ import annotations

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store.keys import Keys
from app.worker import pipeline
from app.worker.pipeline import RebuildBusy, rebuild
from tests import live_state
from tests.serving.conftest import load_shop


def test_failed_rebuild_keeps_the_previous_version_and_records_the_error(
    client: TestClient, settings: Settings, pg: psycopg.Connection, rds: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = load_shop(client, settings, n_users=60, n_items=30)
    keys = Keys.of(settings)
    before = rds.get(keys.model_pointer())

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "publish_propensity", broken)  # fails midway through publishing
    with pytest.raises(RuntimeError):
        rebuild(settings, trigger="test")
    assert rds.get(keys.model_pointer()) == before == loaded.run.version.encode()
    status, error = pg.execute("SELECT status, error FROM model_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and "disk on fire" in error
    leftovers = [k for k in rds.scan_iter(match=f"{settings.redis_prefix}*") if b"{m:" in k
                 and loaded.run.version.encode() not in k]
    assert leftovers == []  # the half-written version was discarded
    assert client.get(f"/v1/users/{loaded.shop.users[0]['user_id']}/recommendations").json()["model_version"] \
        == loaded.run.version
    assert not rds.exists(keys.rebuild_lock())
    monkeypatch.undo()
    assert rebuild(settings, trigger="test").version != loaded.run.version


def test_one_rebuild_at_a_time_and_abandoned_runs_are_closed(
    client: TestClient, settings: Settings, pg: psycopg.Connection, rds: redis.Redis
) -> None:
    load_shop(client, settings, n_users=40, n_items=20)
    keys = Keys.of(settings)
    # a worker killed mid-rebuild leaves its lock (until it expires) and a "running" row
    rds.set(keys.rebuild_lock(), "dead-worker", ex=1)
    pg.execute("INSERT INTO model_runs (status, trigger) VALUES ('running', 'schedule')")
    with pytest.raises(RebuildBusy):
        rebuild(settings)
    rds.delete(keys.rebuild_lock())  # what expiry does after rebuild_lock_seconds
    rebuild(settings)
    statuses = [r[0] for r in pg.execute("SELECT status FROM model_runs ORDER BY id").fetchall()]
    assert statuses[-2:] == ["failed", "succeeded"] and "running" not in statuses


def test_redis_flush_is_rehydrated_by_the_next_rebuild(
    client: TestClient, settings: Settings, rds: redis.Redis
) -> None:
    loaded = load_shop(client, settings, n_users=40, n_items=20)
    keys = Keys.of(settings)
    user = loaded.shop.events[-1]["user_id"]
    history_before = rds.lrange(keys.history(user), 0, 4)
    for key in rds.scan_iter(match=f"{settings.redis_prefix}*"):
        rds.delete(key)
    cold = client.get(f"/v1/users/{user}/recommendations").json()
    assert cold["strategy"] == "popularity_no_model"
    rebuild(settings)
    assert rds.lrange(keys.history(user), 0, 4) == history_before
    assert live_state.meta_count(rds, keys) == len(loaded.shop.items)
    assert client.get(f"/v1/users/{user}/recommendations").json()["strategy"] == "hybrid"


def test_an_empty_shop_is_skipped_quietly(settings: Settings, pg: psycopg.Connection, rds: redis.Redis) -> None:
    from app.worker.pipeline import NothingToBuild

    with pytest.raises(NothingToBuild):
        rebuild(settings)
    keys = Keys.of(settings)
    assert rds.get(keys.model_pointer()) is None
    assert rds.exists(keys.hydrated())  # no busy retry loop on an empty install
    status, error = pg.execute("SELECT status, error FROM model_runs").fetchone()
    assert status == "skipped" and "no events" in error
