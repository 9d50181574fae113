"""Delivering the outbox to a real receiver on 127.0.0.1: signature, retries, disabling, the send-time check."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from app.settings import Settings
from app.webhooks import signing
from app.webhooks.dispatcher import BackgroundDispatcher
from tests.webhooks.outbox import enqueue
from tests.webhooks.receiver import Receiver


def _register(client: TestClient, url: str, events: list[str] | None = None) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json={"url": url, "events": events or ["cart_abandoned"]})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _deliveries(client: TestClient, webhook_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
    return out


def test_signed_json_post_with_a_delivery_id(
    client: TestClient, hook: Receiver, settings: Settings, dispatcher: BackgroundDispatcher
) -> None:
    webhook = _register(client, hook.url)
    other = _register(client, hook.url, ["back_in_stock"])  # not subscribed: gets nothing
    assert enqueue(settings.database_url or "", "cart_abandoned", "u1", {"event": "cart_abandoned", "x": 1}) == 1
    assert hook.wait_for(lambda: len(hook.delivered()) == 1, 10)
    got = hook.delivered()[0]
    assert got.headers["content-type"] == "application/json"
    assert signing.verify(webhook["secret"], got.headers["shopmind-signature"], got.body, time.time())
    assert not signing.verify(other["secret"], got.headers["shopmind-signature"], got.body, time.time())
    assert not signing.verify(webhook["secret"], got.headers["shopmind-signature"], got.body + b" ", time.time())
    assert got.json["event"] == "cart_abandoned" and got.json["x"] == 1
    [row] = _deliveries(client, webhook["id"])
    assert hook.wait_for(lambda: _deliveries(client, webhook["id"])[0]["status"] == "delivered", 5)
    row = _deliveries(client, webhook["id"])[0]
    assert row["delivery_id"] == got.json["delivery_id"] and row["attempts"] == 1 and row["last_status"] == 200
    assert _deliveries(client, other["id"]) == []


def test_a_500_is_retried_until_it_succeeds(
    client: TestClient, hook: Receiver, settings: Settings, dispatcher: BackgroundDispatcher
) -> None:
    webhook = _register(client, hook.url)
    hook.statuses = [500, 502, 503]
    enqueue(settings.database_url or "", "cart_abandoned", "u1", {"event": "cart_abandoned"})
    assert hook.wait_for(lambda: len(hook.delivered()) == 1, 20)
    assert len(hook.requests) == 4
    assert len({r.json["delivery_id"] for r in hook.requests}) == 1  # the same delivery, retried
    assert hook.wait_for(lambda: _deliveries(client, webhook["id"])[0]["status"] == "delivered", 5)
    row = _deliveries(client, webhook["id"])[0]
    assert row["attempts"] == 4 and row["last_error"] is None
    health = client.get("/v1/webhooks").json()["webhooks"][0]
    assert health["consecutive_failures"] == 0 and health["enabled"]


def test_a_4xx_fails_at_once_and_the_error_is_shown(
    client: TestClient, hook: Receiver, settings: Settings, dispatcher: BackgroundDispatcher
) -> None:
    webhook = _register(client, hook.url)
    hook.statuses = [410]
    enqueue(settings.database_url or "", "cart_abandoned", "u1", {"event": "cart_abandoned"})
    assert hook.wait_for(lambda: _deliveries(client, webhook["id"])[0]["status"] == "failed", 10)
    row = _deliveries(client, webhook["id"])[0]
    assert row["attempts"] == 1 and row["last_status"] == 410 and row["last_error"].startswith("HTTP 410")
    time.sleep(0.5)
    assert len(hook.requests) == 1


def test_refused_connection_is_retried_and_disables_the_endpoint(
    database_url: str, redis_url: str, redis_prefix: str, client: TestClient, pg: psycopg.Connection[Any]
) -> None:
    from tests.webhooks.conftest import fast_settings

    with Receiver_port_closed() as dead_url:
        webhook = _register(client, dead_url)
        enqueue(database_url, "cart_abandoned", "u1", {"event": "cart_abandoned"})
        settings = fast_settings(database_url, redis_url, redis_prefix, webhook_disable_after_failures=3)
        running = BackgroundDispatcher(settings).start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and client.get("/v1/webhooks").json()["webhooks"][0]["enabled"]:
                time.sleep(0.1)
        finally:
            running.stop()
    health = client.get("/v1/webhooks").json()["webhooks"][0]
    assert not health["enabled"] and health["disabled_at"] and health["consecutive_failures"] == 3
    row = _deliveries(client, webhook["id"])[0]
    assert row["status"] == "pending" and row["attempts"] == 3 and "connection failed" in row["last_error"]
    enabled = client.post(f"/v1/webhooks/{webhook['id']}/enable").json()
    assert enabled["enabled"] and enabled["consecutive_failures"] == 0


def test_the_address_is_checked_again_at_delivery(
    database_url: str, redis_url: str, redis_prefix: str, client: TestClient, hook: Receiver
) -> None:
    """Registered while private addresses were allowed, sent by a dispatcher that refuses them: the
    check at send time (the defence against DNS rebinding) refuses it without connecting."""
    from tests.webhooks.conftest import fast_settings

    webhook = _register(client, hook.url)
    enqueue(database_url, "cart_abandoned", "u1", {"event": "cart_abandoned"})
    strict = fast_settings(database_url, redis_url, redis_prefix, webhook_allow_private=False)
    running = BackgroundDispatcher(strict).start()
    try:
        assert hook.wait_for(lambda: _deliveries(client, webhook["id"])[0]["attempts"] >= 1, 10)
    finally:
        running.stop()
    row = _deliveries(client, webhook["id"])[0]
    assert row["status"] == "pending" and row["last_error"].startswith("refused:") and "127.0.0.1" in row["last_error"]
    assert hook.requests == [] and not hook.arrived.is_set()


class Receiver_port_closed:
    """A loopback URL on a port nobody listens on: connections are refused."""

    def __enter__(self) -> str:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return f"http://127.0.0.1:{port}/hook"

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_dashboard_shows_a_disabled_endpoint(
    client: TestClient, pg: psycopg.Connection[Any], database_url: str
) -> None:
    healthy = _register(client, "http://127.0.0.1:9/ok")
    broken = _register(client, "http://127.0.0.1:9/broken")
    pg.execute("UPDATE webhooks SET disabled_at = now(), consecutive_failures = 50 WHERE id = %s", (broken["id"],))
    client.put("/v1/triggers/cart", json={"kind": "cart_abandoned", "delay_seconds": 60})
    # one firing for u1 delivered to both endpoints, one for u2: two shoppers fired for today
    for user in ("u1", "u2"):
        enqueue(database_url, "cart_abandoned", user, {"event": "cart_abandoned", "trigger": {"name": "cart"}})
    page = client.get("/dashboard", params={"key": client.headers["Authorization"].split()[1]})
    assert page.status_code == 200
    html = page.text
    section = html.split('id="campaigns"', 1)[1].split("</section>", 1)[0]
    assert f"{healthy['id']}</td><td class=\"mono small\">http://127.0.0.1:9/ok" in section
    rows = section.split("<tr>")
    [broken_row] = [r for r in rows if "/broken" in r]
    assert "disabled" in broken_row and ">50<" in broken_row
    [ok_row] = [r for r in rows if "/ok<" in r]
    assert "enabled" in ok_row and "disabled" not in ok_row
    assert "cart_abandoned" in section and ">60 s<" in section
    [cart_row] = [r for r in rows if "<td>cart</td>" in r]
    assert '<td class="num">2</td>' in cart_row  # two shoppers, three deliveries
