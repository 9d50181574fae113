"""browse_abandoned (k views in a category, no cart) and back_in_stock (wanted while unavailable)."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.webhooks.dispatcher import BackgroundDispatcher
from tests.triggers.flow import post, settle, trigger, users_delivered, webhook
from tests.webhooks.receiver import Receiver


def _catalog(client: TestClient) -> None:
    items = [{"item_id": f"s{k}", "title": f"Shoe {k}", "price": 50.0 + k, "categories": ["shoes"]} for k in range(4)]
    items += [{"item_id": "h1", "title": "Hat", "price": 15.0, "categories": ["hats"]}]
    items += [{"item_id": "rare", "title": "Rare boot", "price": 300.0, "categories": ["shoes"], "available": False}]
    assert client.post("/v1/items", json={"items": items}).status_code == 200


def _views(user: str, *items: str) -> list[dict[str, Any]]:
    return [{"user_id": user, "item_id": i, "type": "view"} for i in items]


def test_browse_abandoned_fires_at_k_views_in_a_category_and_a_cart_cancels(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, pg: psycopg.Connection[Any]
) -> None:
    _catalog(client)
    webhook(client, hook, ["browse_abandoned"])
    trigger(client, "browse", {"kind": "browse_abandoned", "delay_seconds": 1, "conditions": {"min_views": 3}})
    post(client, *_views("ann", "s0", "s1"))  # two: counting, not armed
    post(client, *_views("ann", "s2", "h1"))  # the third view in shoes arms; hats has one
    post(client, *_views("bob", "s0", "s1", "s2"))
    post(client, {"user_id": "bob", "item_id": "s1", "type": "add_to_cart"})  # in time: cancelled
    post(client, *_views("cy", "s0", "h1"))  # below the threshold everywhere
    armed = pg.execute("SELECT user_id, subject, views FROM trigger_pending WHERE due_at IS NOT NULL").fetchall()
    assert armed == [("ann", "shoes", 3)]
    assert hook.wait_for(lambda: len(hook.delivered()) >= 1, 15)
    settle(2.0)
    assert users_delivered(hook) == ["ann"]
    body = hook.delivered()[0].json
    assert body["category"] == "shoes" and sorted(i["item_id"] for i in body["items"]) == ["s0", "s1", "s2"]


def test_back_in_stock_fires_when_an_item_wanted_while_unavailable_returns(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, pg: psycopg.Connection[Any]
) -> None:
    _catalog(client)
    webhook(client, hook, ["back_in_stock"])
    trigger(client, "restock", {"kind": "back_in_stock", "delay_seconds": 0})
    post(client, *_views("ann", "rare"), {"user_id": "bob", "item_id": "rare", "type": "add_to_cart"},
         *_views("cy", "s0"))  # cy saw an available item: no interest recorded
    assert pg.execute("SELECT user_id FROM trigger_pending ORDER BY 1").fetchall() == [("ann",), ("bob",)]
    settle(0.5)
    assert hook.requests == []  # still out of stock
    r = client.put("/v1/items/rare", json={"title": "Rare boot", "price": 280.0, "categories": ["shoes"],
                                           "available": True})
    assert r.status_code == 200
    assert hook.wait_for(lambda: len(hook.delivered()) >= 2, 15)
    settle(1.0)
    assert sorted(users_delivered(hook)) == ["ann", "bob"]
    assert {(i["item_id"], i["price"]) for r in hook.delivered() for i in r.json["items"]} == {("rare", 280.0)}
