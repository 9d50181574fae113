"""A shop where who will buy what is known: two worlds of items that no shopper crosses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings

GARDEN = [f"g{i}" for i in range(8)]
KITCHEN = [f"k{i}" for i in range(8)]
TARGET = "g0"
BUYERS = [f"g-buyer-{u}" for u in range(6)]  # bought g0 (and g1 or g2, which it goes with)
FANS = [f"g-fan-{u}" for u in range(10)]  # garden shoppers who never bought g0
CASUALS = [f"g-casual-{u}" for u in range(5)]  # garden items far from g0 only (g3..g7): content links alone
COOKS = [f"cook-{u}" for u in range(10)]  # kitchen only: nothing links them to g0


def _shop(client: TestClient) -> None:
    items = [{"item_id": i, "title": "garden tool", "categories": ["garden"], "price": 20.0} for i in GARDEN]
    items += [{"item_id": i, "title": "kitchen pot", "categories": ["kitchen"], "price": 30.0} for i in KITCHEN]
    assert client.post("/v1/items", json={"items": items}).status_code == 200
    events: list[dict[str, Any]] = []

    def add(user: str, item: str, kind: str) -> None:
        events.append({"user_id": user, "item_id": item, "type": kind})

    for round_ in range(3):
        for u, user in enumerate(BUYERS):
            add(user, TARGET, "view")
            add(user, GARDEN[1 + (u + round_) % 2], "purchase")
            if round_ == 0:
                add(user, TARGET, "purchase")
        for u, user in enumerate(FANS):
            for item in (GARDEN[1 + (u + round_) % 2], GARDEN[3 + (u + round_) % 5]):
                add(user, item, "view")
                add(user, item, "purchase")
        for u, user in enumerate(CASUALS):
            item = GARDEN[3 + (u + round_) % 5]
            add(user, item, "view")
            add(user, item, "purchase")
        for u, user in enumerate(COOKS):
            for item in (KITCHEN[(u + round_) % 8], KITCHEN[(u + round_ + 3) % 8]):
                add(user, item, "view")
                add(user, item, "purchase")
    start, step = time.time() - 60 * 86400, 59 * 86400 / len(events)  # the last 60 days: a live shop
    for k, event in enumerate(events):
        event["timestamp"] = start + k * step
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)


@pytest.fixture
def built(client: TestClient, settings: Settings) -> Iterator[TestClient]:
    """The two-world shop, rebuilt."""
    from app.worker.pipeline import rebuild

    _shop(client)
    rebuild(settings, trigger="test")
    yield client
