"""propensity_crossed: a rebuild's high tier compared with the previous one's, kept in Postgres."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient

from app.webhooks.dispatcher import BackgroundDispatcher
from app.worker.stage_triggers import record_crossings
from tests.triggers.flow import post, trigger, users_delivered, webhook
from tests.webhooks.receiver import Receiver


def _high(*users: str) -> dict[str, Any]:
    return {"purchase": np.array(users, dtype=object), "churn": np.array(["u1"], dtype=object)}


def test_only_shoppers_newly_high_fire_after_a_baseline(
    client: TestClient, hook: Receiver, dispatcher: BackgroundDispatcher, database_url: str,
    pg: psycopg.Connection[Any],
) -> None:
    webhook(client, hook, ["propensity_crossed"])
    trigger(client, "hot", {"kind": "propensity_crossed", "delay_seconds": 0, "conditions": {"target": "purchase"}})
    post(client, *({"user_id": f"u{k}", "item_id": "i1", "type": "view"} for k in range(1, 6)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert record_crossings(conn, _high("u1", "u2")) == 0  # the baseline: nobody crosses
        assert record_crossings(conn, _high("u2", "u3", "u4", "ghost")) == 2  # u3, u4 (ghost: no such shopper)
    assert pg.execute("SELECT user_id FROM propensity_high_tiers ORDER BY 1").fetchall() == [
        ("u2",), ("u3",), ("u4",)]  # churn is not watched: not kept
    assert hook.wait_for(lambda: sorted(users_delivered(hook)) == ["u3", "u4"], 15)
    body = hook.delivered()[0].json
    assert body["event"] == "propensity_crossed" and body["target"] == "purchase" and body["items"] == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        # u1 was in the baseline, left the tier, and comes back: that is a crossing (it never fired before)
        assert record_crossings(conn, _high("u1", "u2", "u3", "u4")) == 1
    assert hook.wait_for(lambda: sorted(users_delivered(hook)) == ["u1", "u3", "u4"], 15)


def test_no_watching_trigger_costs_nothing(database_url: str, pg: psycopg.Connection[Any]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert record_crossings(conn, _high("u1")) == 0
    assert pg.execute("SELECT count(*) FROM propensity_high_tiers").fetchone() == (0,)
