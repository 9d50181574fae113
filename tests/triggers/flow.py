"""Helpers for trigger tests: a webhook on the receiver, a trigger, events, and what arrived."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.webhooks.receiver import Receiver


def webhook(client: TestClient, hook: Receiver, events: list[str]) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json={"url": hook.url, "events": events})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def trigger(client: TestClient, name: str, body: dict[str, Any]) -> None:
    r = client.put(f"/v1/triggers/{name}", json=body)
    assert r.status_code == 200, r.text


def post(client: TestClient, *events: dict[str, Any]) -> None:
    r = client.post("/v1/events", json={"events": list(events)})
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text


def users_delivered(hook: Receiver) -> list[str]:
    return [r.json["user"]["user_id"] for r in hook.delivered()]


def settle(seconds: float) -> None:
    """Time for anything wrongly armed to fire too (the tests use 1-2 s delays and a 0.1 s poll)."""
    time.sleep(seconds)
