"""GDPR: export shows everything stored about a user; erasure leaves no trace in Postgres or Redis."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

import psycopg
import redis
from fastapi.testclient import TestClient

from app.settings import Settings
from app.store.keys import Keys

USER = "privacy-Ω-user-7"  # distinctive: never a substring of anything else the test stores
OTHER = "bystander-user"
VERSION = "v-test-1"


def _ingest(client: TestClient, user: str, n: int = 6) -> None:
    events = [
        {"event_id": f"{user}-e{k}", "user_id": user, "item_id": f"item-{k % 3}",
         "type": ["view", "add_to_cart", "purchase"][k % 3], "value": 1.0, "price": 9.5,
         "session_id": f"{user}-s", "properties": {"k": k}}
        for k in range(n)
    ]
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200 and r.json()["accepted"] == n and r.json()["realtime_updated"] is True


def _fake_model(rds: redis.Redis, keys: Keys) -> None:
    """A published model version holding per-user state the way the worker lays it out."""
    rds.set(keys.model_pointer(), VERSION)
    rds.zadd(keys.model_versions(), {VERSION: 1.0})
    rds.hset(keys.model(VERSION, "meta"), mapping={"user_parts": "user_nn,propensity", "user_zsets": "aud"})
    rds.hset(keys.model(VERSION, "user_nn"), mapping={USER: b"\x01\x00\x00\x00\xff\xfe", OTHER: b"\x00"})
    rds.hset(keys.model(VERSION, "propensity"), mapping={USER: '{"p": 0.42}', OTHER: '{"p": 0.1}'})
    rds.zadd(keys.model(VERSION, "aud"), {USER: 0.42, OTHER: 0.1})
    rds.set(keys.model(VERSION, "users"), f"{OTHER}\n{USER}\nthird".encode())


def _scan(rds: redis.Redis, prefix: str) -> Iterator[tuple[bytes, list[bytes]]]:
    """Every key under the prefix with everything it holds (members, fields, values)."""
    for key in rds.scan_iter(match=f"{prefix}*", count=1000):
        kind = rds.type(key).decode()
        if kind == "string":
            yield key, [rds.get(key) or b""]
        elif kind == "list":
            yield key, rds.lrange(key, 0, -1)
        elif kind == "set":
            yield key, list(rds.smembers(key))
        elif kind == "zset":
            yield key, [m for m, _ in rds.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            yield key, [b for kv in rds.hgetall(key).items() for b in kv]
        else:
            yield key, []


def _mentions(rds: redis.Redis, prefix: str, user_id: str) -> list[str]:
    needle = user_id.encode()
    return [
        key.decode(errors="replace") for key, values in _scan(rds, prefix)
        if needle in key or any(needle in v for v in values)
    ]


def test_export_shows_rows_events_and_redis_state(
    client: TestClient, rds: redis.Redis, settings: Settings
) -> None:
    keys = Keys.of(settings)
    assert client.put(f"/v1/users/{USER}", json={"attributes": {"country": "DE"}}).status_code == 200
    _ingest(client, USER)
    _fake_model(rds, keys)

    r = client.get(f"/v1/users/{USER}/export")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["user_id"] == USER and body["user"]["attributes"] == {"country": "DE"}
    assert len(body["events"]) == 6
    first = body["events"][0]
    assert set(first) >= {"id", "event_id", "user_id", "item_id", "type", "value", "price", "ts", "session_id",
                          "recommendation_id", "properties", "received_at"}
    assert {e["event_id"] for e in body["events"]} == {f"{USER}-e{k}" for k in range(6)}
    state = body["redis"]
    assert len(state["history"]) == 6 and {h["item_id"] for h in state["history"]} == {"item-0", "item-1", "item-2"}
    assert state["purchased"] == ["item-2"]
    assert state["current_model_version"] == VERSION
    (model,) = state["models"]
    assert model["fields"]["propensity"] == {"encoding": "json", "value": {"p": 0.42}}
    assert model["fields"]["user_nn"]["encoding"] == "base64"
    assert base64.b64decode(model["fields"]["user_nn"]["value"]) == b"\x01\x00\x00\x00\xff\xfe"
    assert model["scores"] == {"aud": 0.42}
    assert model["in_user_table"] is True


def test_export_unknown_user_is_404(client: TestClient) -> None:
    r = client.get("/v1/users/nobody/export")
    assert r.status_code == 404 and r.json()["error"] == "UserNotFound"


def test_erasure_leaves_no_trace(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    keys = Keys.of(settings)
    client.put(f"/v1/users/{USER}", json={"attributes": {"email_hash": "abc"}})
    _ingest(client, USER)
    _ingest(client, OTHER)
    _fake_model(rds, keys)
    assert _mentions(rds, settings.redis_prefix, USER), "the test should have stored state to erase"

    r = client.delete(f"/v1/users/{USER}")
    assert r.status_code == 200 and r.json() == {"user_id": USER, "erased": True, "events_deleted": 6}

    assert pg.execute("SELECT count(*) FROM users WHERE user_id = %s", (USER,)).fetchone() == (0,)
    assert pg.execute("SELECT count(*) FROM events WHERE user_id = %s", (USER,)).fetchone() == (0,)
    leftovers = pg.execute(
        "SELECT count(*) FROM events WHERE session_id LIKE %s OR event_id LIKE %s", (f"{USER}%", f"{USER}%")
    ).fetchone()
    assert leftovers == (0,)
    assert _mentions(rds, settings.redis_prefix, USER) == []
    # The bystander is untouched.
    assert _mentions(rds, settings.redis_prefix, OTHER)
    assert client.get(f"/v1/users/{OTHER}").json()["event_count"] == 6
    # Erasing again: nothing left to erase.
    assert client.delete(f"/v1/users/{USER}").status_code == 404


def _shop_with_user(client: TestClient) -> None:
    rng = random.Random(7)
    users = [USER, *(f"shopper-{u}" for u in range(40))]
    items = [{"item_id": f"sku-{i}", "title": f"thing {i}", "categories": [f"cat{i % 4}"], "price": 10.0 + i}
             for i in range(30)]
    assert client.post("/v1/items", json={"items": items}).status_code == 200
    events = []
    for k in range(1500):
        user = users[k % len(users)]
        item = f"sku-{(users.index(user) * 3 + rng.randrange(8)) % 30}"
        events.append({"user_id": user, "item_id": item, "type": rng.choice(["view", "view", "add_to_cart", "purchase"]),
                       "timestamp": 1_760_000_000 + k * 600})
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 1500


def test_erasure_after_a_real_rebuild(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    """The worker's own per-user model state (neighbours, scores, audiences, id table) is erased too."""
    from app.worker.pipeline import rebuild

    _shop_with_user(client)
    result = rebuild(settings, trigger="test")
    assert result.version
    model_keys = [k for k in _mentions(rds, settings.redis_prefix, USER) if "{m:" in k]
    assert model_keys, "the rebuild should hold model state about the user"
    exported = client.get(f"/v1/users/{USER}/export").json()["redis"]["models"]
    assert any(m["fields"] or m["scores"] for m in exported)

    assert client.delete(f"/v1/users/{USER}").status_code == 200
    assert _mentions(rds, settings.redis_prefix, USER) == []
    assert pg.execute("SELECT count(*) FROM events WHERE user_id = %s", (USER,)).fetchone() == (0,)


def test_erasure_reaches_versions_in_their_grace_period(
    client: TestClient, rds: redis.Redis, settings: Settings, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A replaced version keeps its keys for a while (in-flight readers): its state about the user is
    exported and erased like the serving version's."""
    from app.worker.pipeline import rebuild

    _shop_with_user(client)
    keep_one = settings.model_copy(update={"keep_versions": 1})
    old, new = rebuild(keep_one, trigger="test").version, rebuild(keep_one, trigger="test").version
    keys = Keys.of(settings)
    assert [v.decode() for v in rds.zrange(keys.model_versions(), 0, -1)] == [new]
    assert rds.ttl(keys.model(old, "meta")) > 0, "the first version should be expiring, not gone"
    held = {k.split("{m:")[1].split("}")[0] for k in _mentions(rds, settings.redis_prefix, USER) if "{m:" in k}
    assert held == {old, new}
    exported = client.get(f"/v1/users/{USER}/export").json()["redis"]["models"]
    assert {m["version"] for m in exported if m["fields"] or m["scores"] or m["in_user_table"]} == {old, new}

    assert client.delete(f"/v1/users/{USER}").status_code == 200
    assert _mentions(rds, settings.redis_prefix, USER) == []
