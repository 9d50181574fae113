"""cart_abandoned end to end: ingest arms it, the dispatcher fires it once into a signed webhook."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.settings import Settings
from app.webhooks import signing
from app.webhooks.dispatcher import BackgroundDispatcher
from tests.server import free_port
from tests.triggers.flow import post, settle, trigger, users_delivered, webhook
from tests.webhooks.receiver import Receiver

CART = {"kind": "cart_abandoned", "delay_seconds": 1, "recommendations": {"n": 3}}


def _catalog(client: TestClient) -> None:
    items = [{"item_id": f"i{k}", "title": f"Item {k}", "price": 10.0 + k, "categories": ["shoes"]} for k in range(6)]
    assert client.post("/v1/items", json={"items": items}).status_code == 200


def test_a_cart_without_purchase_fires_once_signed_and_a_purchase_cancels(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, pg: psycopg.Connection[Any]
) -> None:
    _catalog(client)
    secret = webhook(client, hook, ["cart_abandoned"])["secret"]
    trigger(client, "cart", CART)
    post(client, {"user_id": "ann", "item_id": "i1", "type": "add_to_cart"},
         {"user_id": "ann", "item_id": "i2", "type": "add_to_cart"},
         {"user_id": "bob", "item_id": "i3", "type": "add_to_cart"})
    post(client, {"user_id": "bob", "item_id": "i3", "type": "purchase", "price": 13.0})  # in time
    started = time.monotonic()
    assert hook.wait_for(lambda: len(hook.delivered()) >= 1, 15)
    assert time.monotonic() - started > 0.5  # not before the delay
    settle(2.0)
    assert users_delivered(hook) == ["ann"]
    got = hook.delivered()[0]
    assert signing.verify(secret, got.headers["shopmind-signature"], got.body, time.time())
    body = got.json
    assert body["event"] == "cart_abandoned" and body["delivery_id"]
    assert body["trigger"] == {"name": "cart", "kind": "cart_abandoned", "delay_seconds": 1}
    assert [(i["item_id"], i["title"], i["price"]) for i in body["items"]] == [("i1", "Item 1", 11.0),
                                                                              ("i2", "Item 2", 12.0)]
    recs = body["recommendations"]
    assert recs["recommendation_id"] and 1 <= len(recs["items"]) <= 3
    assert isinstance(body["propensity"], dict)
    assert pg.execute("SELECT count(*) FROM trigger_pending").fetchone() == (0,)

    # the same shopper carts again within the cooldown (a day by default): nothing more
    post(client, {"user_id": "ann", "item_id": "i4", "type": "add_to_cart"})
    settle(2.5)
    assert users_delivered(hook) == ["ann"]


def test_a_large_batch_arms_through_the_copy_path(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, pg: psycopg.Connection[Any]
) -> None:
    _catalog(client)
    webhook(client, hook, ["*"])
    trigger(client, "cart", {**CART, "delay_seconds": 2})
    carts = [{"user_id": f"u{k}", "item_id": f"i{k % 6}", "type": "add_to_cart"} for k in range(60)]
    buys = [{"user_id": f"u{k}", "item_id": f"i{k % 6}", "type": "purchase"} for k in range(0, 60, 2)]
    post(client, *carts)
    armed = pg.execute("SELECT count(*) FROM trigger_pending WHERE due_at IS NOT NULL").fetchone()
    assert armed == (60,)
    post(client, *buys)  # 30 events: the pipelined path cancels half of them
    assert pg.execute("SELECT count(*) FROM trigger_pending").fetchone() == (30,)
    assert hook.wait_for(lambda: len(hook.delivered()) >= 30, 20)
    settle(1.0)
    assert sorted(users_delivered(hook)) == sorted(f"u{k}" for k in range(1, 60, 2))


def test_a_purchase_ingested_after_the_cart_but_made_before_it_does_not_cancel(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher
) -> None:
    _catalog(client)
    webhook(client, hook, ["cart_abandoned"])
    trigger(client, "cart", CART)
    now = time.time()
    post(client, {"user_id": "cy", "item_id": "i1", "type": "add_to_cart", "timestamp": now})
    post(client, {"user_id": "cy", "item_id": "i0", "type": "purchase", "timestamp": now - 60})
    assert hook.wait_for(lambda: users_delivered(hook) == ["cy"], 15)


def test_old_carts_do_not_arm(client: TestClient, hook: Receiver, pg: psycopg.Connection[Any]) -> None:
    _catalog(client)
    trigger(client, "cart", CART)
    post(client, {"user_id": "old", "item_id": "i1", "type": "add_to_cart", "timestamp": time.time() - 3600})
    assert pg.execute("SELECT count(*) FROM trigger_pending").fetchone() == (0,)


def test_ingest_adds_no_statement_without_a_trigger_of_the_kind() -> None:
    from app.events.validate import EventRow
    from app.triggers import arming

    def row(user: str, kind: str) -> EventRow:
        return EventRow(f"e-{user}-{kind}", user, "i1", kind, None, None, 0, None, None, None, 0.0)

    batch = [row("a", "add_to_cart"), row("a", "purchase"), row("b", "view")]
    assert arming.statements(frozenset(), batch) == []
    assert arming.statements(frozenset({"back_in_stock"}), [row("a", "purchase")]) == []
    assert len(arming.statements(frozenset({"cart_abandoned"}), batch)) == 2  # arm carts, cancel on purchases
    every = frozenset({"cart_abandoned", "browse_abandoned", "back_in_stock"})
    assert len(arming.statements(every, batch)) == 4  # carts, views, out-of-stock interest, cancellations


def test_with_redis_down_the_reminder_still_goes_with_postgres_popularity(
    client: TestClient, hook: Receiver, settings: Settings
) -> None:
    _catalog(client)
    post(client, *({"user_id": f"buyer{k}", "item_id": "i5", "type": "purchase"} for k in range(3)))
    webhook(client, hook, ["cart_abandoned"])
    trigger(client, "cart", CART)
    post(client, {"user_id": "ann", "item_id": "i1", "type": "add_to_cart"})
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    running = BackgroundDispatcher(dead).start()
    try:
        assert hook.wait_for(lambda: len(hook.delivered()) == 1, 15)
    finally:
        running.stop()
    recs = hook.delivered()[0].json["recommendations"]
    assert recs["strategy"] == "degraded_popularity" and recs["items"][0]["item_id"] == "i5"
    assert hook.delivered()[0].json["propensity"] == {}


def test_removed_items_leave_the_reminder_and_an_emptied_cart_sends_none(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher
) -> None:
    _catalog(client)
    webhook(client, hook, ["cart_abandoned"])
    trigger(client, "cart", CART)
    now = time.time()
    post(client, {"user_id": "ann", "item_id": "i1", "type": "add_to_cart", "timestamp": now - 0.3},
         {"user_id": "ann", "item_id": "i2", "type": "add_to_cart", "timestamp": now - 0.2},
         {"user_id": "ann", "item_id": "i2", "type": "remove_from_cart", "timestamp": now - 0.1},
         {"user_id": "bob", "item_id": "i3", "type": "add_to_cart", "timestamp": now - 0.2},
         {"user_id": "bob", "item_id": "i3", "type": "remove_from_cart", "timestamp": now - 0.1})
    assert hook.wait_for(lambda: len(hook.delivered()) >= 1, 15)
    settle(2.0)
    assert users_delivered(hook) == ["ann"]
    assert [i["item_id"] for i in hook.delivered()[0].json["items"]] == ["i1"]
