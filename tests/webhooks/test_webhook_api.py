"""Registering webhooks: validation (SSRF refusals without a connection), the secret shown once, deletion."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.webhooks.conftest import fast_settings
from tests.webhooks.receiver import Receiver


def test_create_list_delete(client: TestClient, hook: Receiver) -> None:
    created = client.post("/v1/webhooks", json={"url": hook.url, "events": ["cart_abandoned"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["enabled"] is True and body["events"] == ["cart_abandoned"]
    own = client.post("/v1/webhooks", json={"url": hook.url, "events": ["*"], "secret": "s" * 20}).json()
    assert own["secret"] == "s" * 20
    listed = client.get("/v1/webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [body["id"], own["id"]]
    assert all("secret" not in w for w in listed)
    assert client.delete(f"/v1/webhooks/{body['id']}").status_code == 204
    assert client.delete(f"/v1/webhooks/{body['id']}").status_code == 404
    assert client.get(f"/v1/webhooks/{body['id']}/deliveries").json()["error"] == "WebhookNotFound"
    assert client.get(f"/v1/webhooks/{own['id']}/deliveries").json() == {"deliveries": []}


@pytest.mark.parametrize(("body", "needle"), [
    ({"url": "ftp://example.com/x", "events": ["*"]}, "http"),
    ({"url": "http:///nohost", "events": ["*"]}, "host"),
    ({"url": "http://user:pw@example.com/", "events": ["*"]}, "Credentials"),
    ({"url": "http://example.com:99999/", "events": ["*"]}, "valid URL"),
    ({"url": "http://example.com/", "events": ["cart_abandonned"]}, "unknown events"),
    ({"url": "http://example.com/", "events": []}, "at least 1"),
    ({"url": "http://example.com/", "events": ["*"], "secret": "short"}, "at least 16"),
    ({"url": "http://example.com/", "events": ["*"], "extra": 1}, "Extra inputs"),
])
def test_bad_input_is_a_precise_422(client: TestClient, body: dict[str, object], needle: str) -> None:
    r = client.post("/v1/webhooks", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.text


@pytest.fixture
def strict_client(database_url: str, redis_url: str, redis_prefix: str, pg: object) -> Iterator[TestClient]:
    settings: Settings = fast_settings(database_url, redis_url, redis_prefix, webhook_allow_private=False)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


@pytest.mark.parametrize("url", [
    "http://10.1.2.3/hook", "http://192.168.0.10:8080/", "http://172.16.5.4/", "http://169.254.169.254/latest",
    "http://[::1]/", "http://[fe80::1]/", "http://[::ffff:10.0.0.1]/", "http://0.0.0.0/", "https://100.64.0.1/",
    "http://localhost/hook",
])
def test_private_addresses_are_refused_by_default(strict_client: TestClient, url: str) -> None:
    # Never connected to: the refusal comes from the address alone (literal, or what the name resolves to).
    r = strict_client.post("/v1/webhooks", json={"url": url, "events": ["*"]})
    assert r.status_code == 422, r.text
    assert "SHOPMIND_WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"][0]["msg"]


def test_loopback_receiver_refused_without_a_connection(strict_client: TestClient, hook: Receiver) -> None:
    r = strict_client.post("/v1/webhooks", json={"url": hook.url, "events": ["*"]})
    assert r.status_code == 422
    assert "127.0.0.1" in r.text
    assert not hook.arrived.wait(0.3) and hook.requests == []
    assert strict_client.get("/v1/webhooks").json() == {"webhooks": []}


def test_admin_scope_only(client: TestClient) -> None:
    r = client.get("/v1/webhooks", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
