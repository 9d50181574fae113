"""Shared steps of the experiment tests: a catalog, a placement, an experiment, served lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

ITEMS = [{"item_id": f"i{k}", "title": f"Item {k}", "categories": ["c"], "price": 10.0 + k} for k in range(6)]


def shop(client: TestClient, placement: str = "home") -> None:
    assert client.post("/v1/items", json={"items": ITEMS}).status_code == 200
    # popularity for the lists to draw from (no model is built: cold shoppers get the popular items)
    views = [{"event_id": f"seed-{k}-{i['item_id']}", "user_id": f"seed-{k}", "item_id": i["item_id"], "type": "view"}
             for k in range(3) for i in ITEMS]
    assert client.post("/v1/events", json={"events": views}).json()["accepted"] == len(views)
    assert client.put(f"/v1/placements/{placement}", json={"n": 3}).status_code == 200


def body(placement: str = "home", weights: tuple[float, ...] = (1, 1), **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "name": "home row test", "placement": placement,
        "variants": [{"name": f"v{k}", "weight": w, "overrides": {"n": 3 + k}} for k, w in enumerate(weights)],
        "primary_metric": "conversion",
        "start": (now - timedelta(minutes=1)).isoformat(), "end": (now + timedelta(days=7)).isoformat(),
        **extra,
    }


def create(client: TestClient, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/v1/experiments", json=body(**kwargs))
    assert response.status_code == 201, response.json()
    out: dict[str, Any] = response.json()
    return out


def serve(client: TestClient, user: str, placement: str = "home") -> dict[str, Any]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"placement": placement})
    assert response.status_code == 200, response.json()
    out: dict[str, Any] = response.json()
    return out
