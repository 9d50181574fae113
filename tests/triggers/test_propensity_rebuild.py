"""propensity_crossed through a real rebuild: the first records the high tier, a later one arms the
shoppers who entered it since, and the dispatcher delivers them."""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.settings import Settings
from app.webhooks.dispatcher import BackgroundDispatcher
from tests.triggers.flow import trigger, users_delivered, webhook
from tests.webhooks.receiver import Receiver


def shop(client: TestClient) -> None:
    rng = random.Random(7)
    users = [f"shopper-{u}" for u in range(60)]
    items = [{"item_id": f"sku-{i}", "title": f"thing {i}", "categories": [f"cat{i % 4}"], "price": 10.0 + i}
             for i in range(30)]
    assert client.post("/v1/items", json={"items": items}).status_code == 200
    events = []
    start = time.time() - 3000 * 1800  # the last 62 days: the shop is alive at the rebuild
    for k in range(3000):
        u = rng.randrange(len(users)) if k % 3 else rng.randrange(12)  # a dozen regulars buy often
        events.append({"user_id": users[u], "item_id": f"sku-{(u * 3 + rng.randrange(8)) % 30}",
                       "type": rng.choice(["view", "view", "add_to_cart", "purchase"]),
                       "timestamp": start + k * 1800})
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 3000


def test_a_rebuild_arms_shoppers_who_entered_the_high_tier(
    client: TestClient, hook: Receiver, settings: Settings, pg: psycopg.Connection[Any]
) -> None:
    from app.worker.pipeline import rebuild

    shop(client)
    webhook(client, hook, ["propensity_crossed"])
    trigger(client, "hot", {"kind": "propensity_crossed", "delay_seconds": 0})
    rebuild(settings, trigger="test")
    high = [r[0] for r in pg.execute("SELECT user_id FROM propensity_high_tiers WHERE target = 'purchase' "
                                     "ORDER BY 1").fetchall()]
    assert high, "the shop should have shoppers in the high purchase tier"
    assert all(client.get(f"/v1/users/{u}/propensity").json()["tier"] == "high" for u in high)
    assert pg.execute("SELECT count(*) FROM trigger_pending").fetchone() == (0,)  # the baseline arms nobody

    # the likeliest shopper, as if they had not been high at the previous rebuild (the likeliest: a
    # rebuild a moment later may move shoppers at the edge of the tier, but not them)
    newcomer = max(high, key=lambda u: client.get(f"/v1/users/{u}/propensity").json()["probability"])
    pg.execute("DELETE FROM propensity_high_tiers WHERE user_id = %s", (newcomer,))
    before = set(high) - {newcomer}
    rebuild(settings, trigger="test")
    after = {r[0] for r in pg.execute("SELECT user_id FROM propensity_high_tiers WHERE target = 'purchase'")}
    armed = {r[0] for r in pg.execute("SELECT user_id FROM trigger_pending WHERE subject = 'purchase'")}
    assert newcomer in armed and armed == after - before
    running = BackgroundDispatcher(settings).start()
    try:
        assert hook.wait_for(lambda: sorted(users_delivered(hook)) == sorted(armed), 15)
    finally:
        running.stop()
    body = next(r.json for r in hook.delivered() if r.json["user"]["user_id"] == newcomer)
    assert body["event"] == "propensity_crossed" and body["propensity"]["purchase"]["tier"] == "high"
    assert body["recommendations"]["model_version"]
