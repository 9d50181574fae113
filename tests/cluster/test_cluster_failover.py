"""A master of the Redis Cluster dies mid-test: the API answers degraded (never a 500, never a hang),
then serves in full once a replica has taken over its slots."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.store.keys import Keys
from tests.redis_cluster import LocalCluster
from tests.serving.conftest import LoadedShop, load_shop

BOUND_SECONDS = 5.0  # a request during the outage answers within the client's 2 s timeout and change


@pytest.fixture
def killable(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster; a node killed in the test rejoins afterwards, whatever the outcome."""
    killed_before = {p for p, proc in redis_cluster.processes.items() if proc.poll() is not None}
    assert not killed_before
    yield redis_cluster
    for port, proc in redis_cluster.processes.items():
        if proc.poll() is not None:
            redis_cluster.rejoin(port)


def _timed_get(client: TestClient, path: str) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    response = client.get(path)
    return response.status_code, response.json(), time.monotonic() - started


def _view(user: str, item: str, n: int) -> dict[str, object]:
    return {"events": [{"event_id": f"failover-{user}-{n}", "user_id": user, "item_id": item, "type": "view"}]}


def test_a_killed_master_degrades_then_heals(client: TestClient, settings: object, killable: LocalCluster) -> None:
    loaded: LoadedShop = load_shop(client, settings, n_users=40, n_items=20)  # type: ignore[arg-type]
    keys = Keys.of(loaded.settings)
    user = loaded.shop.users[0]["user_id"]
    item = loaded.shop.items[0]["item_id"]
    path = f"/v1/users/{user}/recommendations?n=5"
    status, body, _ = _timed_get(client, path)
    assert status == 200 and body["strategy"] != "degraded_popularity"
    assert body["model_version"] == loaded.run.version

    # the master of the item's live bucket (its metadata and popularity): every request reads the top
    # of every bucket, and an event of this item updates its bucket
    live_bucket = keys.item_meta_of(item)
    killed = killable.kill_master_serving(live_bucket)

    status, body, took = _timed_get(client, path)
    assert status == 200, body
    assert body["strategy"] == "degraded_popularity" and body["items"], body
    assert took < BOUND_SECONDS
    posted = client.post("/v1/events", json=_view(user, item, 1))
    assert posted.status_code == 200, posted.text
    assert posted.json()["realtime_updated"] is False  # committed to Postgres; the worker repairs Redis

    promoted = killable.wait_for_failover(live_bucket)
    assert promoted != killed

    # each of the API's clients (serving's, ingest's) re-reads the slot map at its first failure after
    # the failover, so a request or two may still fail over the old map; then full service follows
    deadline = time.monotonic() + 15.0
    attempt = 2
    while True:
        status, body, _ = _timed_get(client, path)
        posted = client.post("/v1/events", json=_view(user, item, attempt))
        attempt += 1
        assert status == 200 and posted.status_code == 200, (body, posted.text)  # never a 500 meanwhile
        if body["strategy"] != "degraded_popularity" and posted.json()["realtime_updated"]:
            break
        assert time.monotonic() < deadline, f"not healed after the failover: {body} {posted.text}"
        time.sleep(0.2)
    assert body["model_version"] == loaded.run.version and body["items"]
    # the healed ingest reached the shopper's history (on whichever master serves their slot)
    exported = client.get(f"/v1/users/{user}/export").json()["redis"]
    assert exported["history"][0]["item_id"] == item
    assert exported["current_model_version"] == loaded.run.version
