"""The dispatcher's housekeeping: old outcomes, expired cooldowns and stale browse counts go."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.settings import Settings
from app.webhooks.dispatcher import BackgroundDispatcher


def test_housekeeping_keeps_what_still_matters(
    client: TestClient, settings: Settings, pg: psycopg.Connection[Any]
) -> None:
    client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["*"]})
    client.put("/v1/triggers/cart", json={"kind": "cart_abandoned", "delay_seconds": 60, "cooldown_seconds": 3600})
    client.put("/v1/triggers/browse", json={"kind": "browse_abandoned", "delay_seconds": 60,
                                            "conditions": {"window_seconds": 600}})
    pg.execute("UPDATE webhooks SET disabled_at = now()")  # nothing is sent meanwhile
    for delivery_id, status, age in (("old-sent", "delivered", 40), ("old-pending", "pending", 40),
                                     ("new-sent", "delivered", 1)):
        pg.execute("INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, payload, status, created_at) "
                   "SELECT %s, id, 'cart_abandoned', '{}', %s, now() - %s * interval '1 day' FROM webhooks",
                   (delivery_id, status, age))
    pg.execute("INSERT INTO trigger_fires VALUES ('cart', 'a', now() - interval '2 hours'), "
               "('cart', 'b', now() - interval '10 minutes')")
    pg.execute("INSERT INTO trigger_pending (trigger_name, user_id, subject, started_at, last_at, views) VALUES "
               "('browse', 'a', 'shoes', now() - interval '1 hour', now() - interval '20 minutes', 2), "
               "('browse', 'b', 'shoes', now() - interval '1 hour', now() - interval '5 minutes', 2)")
    running = BackgroundDispatcher(settings).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pg.execute("SELECT count(*) FROM trigger_fires").fetchone() != (1,):
            time.sleep(0.1)
    finally:
        running.stop()
    assert pg.execute("SELECT delivery_id FROM webhook_deliveries ORDER BY 1").fetchall() == [
        ("new-sent",), ("old-pending",)]
    assert pg.execute("SELECT user_id FROM trigger_fires").fetchall() == [("b",)]
    assert pg.execute("SELECT user_id FROM trigger_pending").fetchall() == [("b",)]
