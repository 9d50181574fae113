"""An erased shopper never fires: their armed rows, cooldowns and queued deliveries go with them."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.webhooks.dispatcher import BackgroundDispatcher
from tests.triggers.flow import post, settle, trigger, users_delivered, webhook
from tests.webhooks.receiver import Receiver


def test_erased_before_the_deadline_never_fires(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, pg: psycopg.Connection[Any]
) -> None:
    webhook(client, hook, ["cart_abandoned"])
    trigger(client, "cart", {"kind": "cart_abandoned", "delay_seconds": 1})
    post(client, {"user_id": "gone", "item_id": "i1", "type": "add_to_cart"},
         {"user_id": "kept", "item_id": "i1", "type": "add_to_cart"})
    exported = client.get("/v1/users/gone/export").json()["campaigns"]
    assert [(p["trigger"], p["item_ids"]) for p in exported["pending_triggers"]] == [("cart", ["i1"])]
    assert client.delete("/v1/users/gone").status_code == 200
    assert pg.execute("SELECT user_id FROM trigger_pending").fetchall() == [("kept",)]
    assert hook.wait_for(lambda: users_delivered(hook) == ["kept"], 15)
    settle(1.5)
    assert users_delivered(hook) == ["kept"]
    kept = client.get("/v1/users/kept/export").json()["campaigns"]
    assert [f["trigger"] for f in kept["trigger_fires"]] == ["cart"] and kept["pending_triggers"] == []
    assert [d["payload"]["user"]["user_id"] for d in kept["webhook_deliveries"]] == ["kept"]


def test_erasure_removes_queued_deliveries_and_rows_armed_before_it(
    client: TestClient, hook: Receiver, pg: psycopg.Connection[Any]
) -> None:
    webhook(client, hook, ["cart_abandoned"])
    trigger(client, "cart", {"kind": "cart_abandoned", "delay_seconds": 0})
    post(client, {"user_id": "eve", "item_id": "i1", "type": "add_to_cart"})
    # a row armed before an erasure that a concurrent batch re-created: the tombstone stops it
    pg.execute("INSERT INTO trigger_pending (trigger_name, user_id, subject, started_at, last_at, due_at) "
               "VALUES ('cart', 'zed', '', now() - interval '1 minute', now(), now())")
    pg.execute("INSERT INTO users (user_id) VALUES ('zed')")
    pg.execute("INSERT INTO user_erasures (user_id) VALUES ('zed')")
    pg.execute("INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, user_id, payload) "
               "SELECT 'd-eve', id, 'cart_abandoned', 'eve', '{}' FROM webhooks")
    assert client.delete("/v1/users/eve").status_code == 200
    assert pg.execute("SELECT count(*) FROM webhook_deliveries WHERE user_id = 'eve'").fetchone() == (0,)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    running = BackgroundDispatcher(settings).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pg.execute("SELECT count(*) FROM trigger_pending").fetchone() != (0,):
            time.sleep(0.1)
        settle(0.5)
    finally:
        running.stop()
    assert pg.execute("SELECT count(*) FROM trigger_pending").fetchone() == (0,)  # settled without firing
    assert hook.requests == []


def test_a_merge_hands_an_anonymous_cart_to_the_known_shopper(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, pg: psycopg.Connection[Any]
) -> None:
    webhook(client, hook, ["cart_abandoned"])
    trigger(client, "cart", {"kind": "cart_abandoned", "delay_seconds": 1})
    post(client, {"user_id": "anon-1", "item_id": "i1", "type": "add_to_cart"},
         {"user_id": "known", "item_id": "i2", "type": "add_to_cart"})
    assert client.post("/v1/users/known/merge", json={"from_user_id": "anon-1"}).status_code == 200
    assert pg.execute("SELECT user_id, item_ids FROM trigger_pending").fetchall() == [("known", ["i1", "i2"])]
    assert hook.wait_for(lambda: users_delivered(hook) == ["known"], 15)
    settle(1.0)
    assert users_delivered(hook) == ["known"]
    assert sorted(i["item_id"] for i in hook.delivered()[0].json["items"]) == ["i1", "i2"]
