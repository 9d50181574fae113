"""The rebuild's two sides on two threads: the same version as in turn, and a failure on either side
fails the whole rebuild."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store.keys import Keys
from app.worker import pipeline
from app.worker.pipeline import rebuild, side_by_side
from tests import servers
from tests.serving.conftest import load_shop


def _parts(r: redis.Redis, keys: Keys, version: str) -> dict[str, Any]:
    """Every part of a published version, read back by its type."""
    out: dict[str, Any] = {}
    prefix = keys.model(version, "")
    for raw in r.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode()
        kind = r.type(key)
        if kind == b"string":
            value: Any = r.get(key)
        elif kind == b"hash":
            value = r.hgetall(key)
        elif kind == b"zset":
            value = r.zrange(key, 0, -1, withscores=True)
        else:
            value = {m.decode()[len(prefix):] for m in r.smembers(key)}  # the version's key list
        out[key[len(prefix):]] = value
    return out


def test_stages_side_by_side_publish_what_stages_in_turn_do(
    client: TestClient, settings: Settings, rds: redis.Redis
) -> None:
    load_shop(client, settings, n_users=150, n_items=60)
    in_turn = settings.model_copy(update={"redis_prefix": f"smtest:{uuid.uuid4().hex[:12]}:",
                                          "rebuild_parallel_stages": False})  # fmt: skip
    try:
        now = time.time()
        parallel = rebuild(settings.model_copy(update={"rebuild_parallel_stages": True}), trigger="test", now=now)
        serial = rebuild(in_turn, trigger="test", now=now)
        a, b = _parts(rds, Keys.of(settings), parallel.version), _parts(rds, Keys.of(in_turn), serial.version)
        assert len(a) > 20 and set(a) == set(b)
        assert {k: v for k, v in a.pop("meta").items() if k != b"version"} \
            == {k: v for k, v in b.pop("meta").items() if k != b"version"}
        for part in sorted(a):
            assert a[part] == b[part], part
        assert set(parallel.stages) == set(serial.stages) >= {"recommend", "audience", "propensity", "value"}
        assert parallel.metrics["recommend"]["chosen"] == serial.metrics["recommend"]["chosen"]
    finally:
        r = servers.redis_client(settings.redis_url or "")
        for key in r.scan_iter(match=f"{in_turn.redis_prefix}*", count=1000):
            r.delete(key)
        r.close()


@pytest.mark.parametrize("stage", ["build_recommender", "build_audiences", "build_propensity", "build_value"])
def test_a_failure_on_either_side_fails_the_rebuild_and_the_last_version_keeps_serving(
    client: TestClient, settings: Settings, pg: psycopg.Connection, rds: redis.Redis,
    monkeypatch: pytest.MonkeyPatch, stage: str,
) -> None:
    loaded = load_shop(client, settings, n_users=60, n_items=30)
    keys = Keys.of(settings)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{stage} broke")

    monkeypatch.setattr(pipeline, stage, broken)
    with pytest.raises(RuntimeError, match=f"{stage} broke"):
        rebuild(settings, trigger="test")
    assert rds.get(keys.model_pointer()) == loaded.run.version.encode()
    status, error = pg.execute("SELECT status, error FROM model_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "failed" and f"{stage} broke" in error
    assert not [k for k in rds.scan_iter(match=f"{settings.redis_prefix}*")
                if b"{m:" in k and loaded.run.version.encode() not in k]  # fmt: skip
    assert not rds.exists(keys.rebuild_lock())


def test_side_by_side_runs_the_second_on_another_thread_only_when_parallel() -> None:
    here = threading.get_ident()
    assert side_by_side(threading.get_ident, threading.get_ident, parallel=False) == (here, here)
    first, second = side_by_side(threading.get_ident, threading.get_ident, parallel=True)
    assert first == here and second != here


def test_side_by_side_waits_for_the_other_side_before_a_failure_leaves() -> None:
    """A failing first side does not abandon the second mid-flight: both have stopped when it raises."""
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    def failing() -> None:
        raise ValueError("first side failed")

    with pytest.raises(ValueError, match="first side failed"):
        side_by_side(failing, slow, parallel=True)
    assert finished.is_set()
