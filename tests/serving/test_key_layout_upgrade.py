"""A Redis written by a release before the hash-tagged layout (`items:meta`, `pop:all`, `model:current`,
`hydrated` without tags) is hydrated into the new keys by the worker's next rebuild."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store.keys import Keys
from app.worker import hydrate
from app.worker.pipeline import rebuild
from tests import live_state
from tests.serving.conftest import load_shop


def test_the_untagged_layout_of_an_older_release_is_hydrated_into_the_tagged_one(
    client: TestClient, settings: Settings, rds: redis.Redis
) -> None:
    loaded = load_shop(client, settings, n_users=40, n_items=20)
    keys = Keys.of(settings)
    user = loaded.shop.events[-1]["user_id"]
    history = rds.lrange(keys.history(user), 0, -1)  # per-shopper keys kept their names
    # what an older release left: its live state and pointer under untagged names, none of the new
    for key in rds.scan_iter(match=f"{settings.redis_prefix}*"):
        if b"{live}" in key or b"{model}" in key:
            rds.delete(key)
    old = settings.redis_prefix
    rds.hset(f"{old}items:meta", "item-0001", '{"c":[],"p":null,"a":true,"t":null}')
    rds.zadd(f"{old}pop:all", {"item-0001": 1.0})
    rds.set(f"{old}model:current", loaded.run.version)
    rds.set(f"{old}hydrated", "1")

    assert not hydrate.is_hydrated(rds, keys)  # the worker rebuilds at once (`worker.loop`)
    assert client.get(f"/v1/users/{user}/recommendations").json()["strategy"] == "popularity_no_model"
    rebuild(settings)
    assert hydrate.is_hydrated(rds, keys)
    assert live_state.meta_count(rds, keys) == len(loaded.shop.items)
    assert live_state.popularity(rds, keys)
    assert sorted(rds.lrange(keys.history(user), 0, -1)) == sorted(history)  # ties may swap places
    served = client.get(f"/v1/users/{user}/recommendations").json()
    assert served["strategy"] == "hybrid" and served["items"]
