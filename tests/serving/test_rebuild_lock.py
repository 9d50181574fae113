"""The rebuild lock is renewed while a rebuild works, and a rebuild that lost it cannot publish.

A rebuild is held at a known point by a lock the test takes on `model_runs` (the rebuild's first
statement, right after it took the Redis lock): the lock's fate is then played out while it waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store.keys import Keys
from app.store.versions import PublishFenced
from app.worker.pipeline import RebuildBusy, RunResult, rebuild
from tests.serving.conftest import load_shop


@contextmanager
def held_rebuild(settings: Settings, database_url: str) -> Iterator[dict[str, Any]]:
    """A rebuild started in a thread and held on `model_runs` until the block exits; then joined.

    Yields a dict that receives `result` or `error` once the rebuild ended.
    """
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = rebuild(settings, trigger="test")
        except BaseException as exc:
            out["error"] = exc

    with psycopg.connect(database_url) as holder, psycopg.connect(database_url, autocommit=True) as watcher:
        holder.execute("LOCK TABLE model_runs IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                              " AND datname = current_database() AND pid <> %s",
                              (holder.info.backend_pid,)).fetchone() == (0,):
            assert time.monotonic() < deadline and thread.is_alive(), out
            time.sleep(0.01)
        try:
            yield out
        finally:
            holder.rollback()
            thread.join(timeout=120)


def test_a_rebuild_that_lost_its_lock_does_not_publish(
    client: TestClient, settings: Settings, database_url: str, rds: redis.Redis, pg: psycopg.Connection
) -> None:
    loaded = load_shop(client, settings, n_users=40, n_items=20)
    keys = Keys.of(settings)
    with held_rebuild(settings, database_url) as out:
        rds.set(keys.rebuild_lock(), "another-worker", px=60_000)  # its lock expired, another took it
    assert isinstance(out.get("error"), PublishFenced), out
    assert rds.get(keys.model_pointer()) == loaded.run.version.encode()
    assert rds.get(keys.rebuild_lock()) == b"another-worker"  # the loser did not release it either
    status, error = pg.execute("SELECT status, error FROM model_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and "lost its lock" in error


def test_a_rebuild_longer_than_its_lock_time_keeps_its_lock(
    client: TestClient, settings: Settings, database_url: str, rds: redis.Redis
) -> None:
    load_shop(client, settings, n_users=40, n_items=20)
    keys = Keys.of(settings)
    short = settings.model_copy(update={"rebuild_lock_seconds": 1})
    with held_rebuild(short, database_url) as out:
        token = rds.get(keys.rebuild_lock())
        time.sleep(2.5)  # two and a half lock times
        assert rds.get(keys.rebuild_lock()) == token and token is not None
        assert 0 < rds.pttl(keys.rebuild_lock()) <= 1000
        with pytest.raises(RebuildBusy):
            rebuild(short, trigger="test")  # a second worker is turned away, not let in to publish too
    result = out.get("result")
    assert isinstance(result, RunResult), out
    assert rds.get(keys.model_pointer()) == result.version.encode()
    assert not rds.exists(keys.rebuild_lock())
