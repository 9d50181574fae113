from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "MalformedJSON"


def test_unknown_top_level_field_is_422(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": [], "extra": 1})
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


def test_oversized_batch_is_413(client: TestClient) -> None:
    events = [{"user_id": "u", "item_id": "i", "type": "view"}] * 10_001
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"


def test_oversized_body_is_413(client: TestClient) -> None:
    r = client.post("/v1/events", content=b"x" * (17 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        ({"user_id": "", "item_id": "i", "type": "view"}, "user_id"),
        ({"user_id": "u" * 257, "item_id": "i", "type": "view"}, "user_id"),
        ({"user_id": "u\x00", "item_id": "i", "type": "view"}, "user_id"),
        ({"user_id": "u", "item_id": "i", "type": "view", "price": "NaN"}, "price"),
        ({"user_id": "u", "item_id": "i", "type": "view", "value": 1e300}, "value"),
        ({"user_id": "u", "item_id": "i", "type": "view", "colour": "red"}, "colour"),
        ({"user_id": "u", "item_id": "i", "type": "rating"}, "value"),
        ({"user_id": "u", "item_id": "i", "type": "view", "properties": {"a": {"b": {"c": {"d": {"e": 1}}}}}},
         "properties"),
        ({"user_id": 5, "item_id": "i", "type": "view"}, "user_id"),
    ],
)
def test_bad_event_fields_are_named(client: TestClient, event: dict[str, object], needle: str) -> None:
    r = client.post("/v1/events", json={"events": [event]})
    assert r.status_code == 200
    body = r.json()
    assert body["rejected"] == 1 and needle in body["errors"][0]["error"]


def test_nonfinite_json_numbers_are_rejected(client: TestClient) -> None:
    raw = b'{"events": [{"user_id": "u", "item_id": "i", "type": "view", "price": Infinity}]}'
    r = client.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert r.json()["rejected"] == 1


def test_auth_missing_wrong_and_scoped(client: TestClient) -> None:
    anon = client.get("/v1/items/x", headers={"Authorization": ""})
    assert anon.status_code == 401 and anon.json()["error"] == "Unauthorized"
    bad = client.get("/v1/items/x", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    ok = client.get("/v1/items/x", headers={"Authorization": "", "X-API-Key": "sm_test_admin_key_0123456789"})
    assert ok.status_code == 404


def test_long_path_id_is_422(client: TestClient) -> None:
    r = client.get("/v1/items/" + "x" * 300)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


def test_health(client: TestClient) -> None:
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["postgres"] == "ok"
    assert client.get("/docs").status_code == 200
