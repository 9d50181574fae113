"""Erasing a shopper after a rebuild on Dask: the per-shopper state the Dask workers wrote into the
version (scores, audiences, values, the id table) goes with the rest, on every Redis node."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.worker.pipeline import rebuild
from tests.reliability.test_rel_privacy import USER, _mentions, _shop_with_user

pytestmark = pytest.mark.timeout(600)


def test_erasure_after_a_rebuild_on_dask_leaves_no_trace(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection[tuple[object, ...]],
    dask_cluster: Any,
) -> None:
    _shop_with_user(client)
    on_dask = settings.model_copy(update={"dask_scheduler": dask_cluster.scheduler_address})
    result = rebuild(on_dask, trigger="test")
    assert result.metrics["dask_workers"] == 2
    written_by_shards = {k.split("}:", 1)[1] for k in _mentions(rds, settings.redis_prefix, USER) if "{m:" in k}
    assert {"users", "prop:purchase", "aud:purchase", "value"} <= written_by_shards

    assert client.delete(f"/v1/users/{USER}").status_code == 200
    assert _mentions(rds, settings.redis_prefix, USER) == []
    assert pg.execute("SELECT count(*) FROM events WHERE user_id = %s", (USER,)).fetchone() == (0,)
