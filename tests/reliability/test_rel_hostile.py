"""Hostile input beyond tests/foundation/test_errors.py: every answer a precise 4xx (or a per-event
rejection with a reason), never a 5xx, never a stored value Postgres or Redis would choke on."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/json"}


def _one(client: TestClient, **fields: Any) -> dict[str, Any]:
    event = {"user_id": "u", "item_id": "i", "type": "view", **fields}
    r = client.post("/v1/events", json={"events": [event]})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _raw(client: TestClient, raw: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/events", content=raw, headers=JSON if headers is None else headers)


# --- properties: deep, huge, odd ------------------------------------------------------------------

def test_deeply_nested_json_is_400_not_a_crash(client: TestClient) -> None:
    deep = b'{"events":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = _raw(client, deep)
    assert r.status_code == 400 and r.json()["error"] in ("BadRequest", "MalformedJSON")


def test_properties_nested_just_past_the_limit_names_the_field(client: TestClient) -> None:
    props: dict[str, Any] = {"x": 1}
    for _ in range(40):
        props = {"n": props}
    body = _one(client, properties=props)
    assert body["rejected"] == 1 and "properties" in body["errors"][0]["error"]


def test_properties_over_8kb_are_rejected_with_reason(client: TestClient) -> None:
    body = _one(client, properties={"blob": "x" * 9000})
    assert body["rejected"] == 1 and "8192 bytes" in body["errors"][0]["error"]


def test_properties_wide_but_small_are_accepted(client: TestClient) -> None:
    body = _one(client, properties={f"k{i}": i for i in range(500)})
    assert body["accepted"] == 1


def test_properties_with_nul_are_rejected(client: TestClient) -> None:
    body = _one(client, properties={"k": "a\x00b"})
    assert body["rejected"] == 1 and "NUL" in body["errors"][0]["error"]


def test_properties_must_be_an_object(client: TestClient) -> None:
    body = _one(client, properties=["a", "b"])
    assert body["rejected"] == 1 and "properties" in body["errors"][0]["error"]


# --- ids: unicode accepted, control characters rejected --------------------------------------------

@pytest.mark.parametrize(
    "user_id",
    ["😀🛒", "\u202eRTL-override", "משתמש-עברית", "مستخدم", "ユーザー", "a|b:c{d}", "e\u0301", " padded ", "x" * 256],
)
def test_unicode_ids_are_accepted_and_round_trip(
    client: TestClient, pg: psycopg.Connection[tuple[object, ...]], user_id: str
) -> None:
    body = _one(client, user_id=user_id, item_id=user_id[::-1])
    assert body["accepted"] == 1, body
    assert pg.execute("SELECT count(*) FROM users WHERE user_id = %s", (user_id,)).fetchone() == (1,)
    r = client.get("/v1/users/" + user_id.replace("|", "%7C"))  # path form of the same id
    assert r.status_code == 200 and r.json()["user_id"] == user_id


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "\x1b[31mred", "a\x7fb", "\x00", "   ", "\x0b"])
def test_ids_with_control_characters_are_rejected(client: TestClient, bad: str) -> None:
    for field in ("user_id", "item_id", "event_id", "session_id"):
        body = _one(client, **{field: bad})
        assert body["rejected"] == 1 and field in body["errors"][0]["error"], (field, body)


@pytest.mark.parametrize("path", ["/v1/items/a%0Ab", "/v1/items/%1B", "/v1/users/a%7Fb", "/v1/users/%20%20"])
def test_path_ids_with_control_characters_are_422(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


def test_lone_surrogate_is_rejected(client: TestClient) -> None:
    r = _raw(client, b'{"events":[{"user_id":"\\ud800","item_id":"i","type":"view"}]}')
    assert r.status_code == 200 and r.json()["rejected"] == 1


# --- numbers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw_value", "field"),
    [("1e999", "value"), ("-1e999", "price"), ("1e308", "price"), ("-1", "price"), ("123456789012345678901234567890", "value"),
     ('"12abc"', "value"), ("[1]", "price"), ('{"v": 1}', "value")],
)
def test_absurd_numbers_are_rejected_per_event(client: TestClient, raw_value: str, field: str) -> None:
    raw = f'{{"events":[{{"user_id":"u","item_id":"i","type":"view","{field}":{raw_value}}}]}}'.encode()
    r = _raw(client, raw)
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 1 and field in r.json()["errors"][0]["error"]


def test_integer_with_thousands_of_digits_is_400(client: TestClient) -> None:
    r = _raw(client, b'{"events":[{"user_id":"u","item_id":"i","type":"view","value":1' + b"0" * 5000 + b"}]}")
    assert r.status_code == 400


def test_item_price_limits(client: TestClient) -> None:
    assert client.put("/v1/items/p", json={"price": 1e300}).status_code == 422
    r = client.put("/v1/items/p", content=b'{"price": 1e400}', headers=JSON)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"
    assert client.put("/v1/items/p", json={"price": 0}).status_code == 200


# --- timestamps: far future and far past rejected with a reason -------------------------------------

@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("9999-12-31T23:59:59Z", "future"),
        (4_102_444_800, "future"),  # 2100-01-01
        (1e20, "after 9999"),
        ("1999-12-31T23:59:59Z", "before 2000-01-01"),
        (0, "before 2000-01-01"),
        (-1e20, "before 0000"),
        ("0001-01-01T00:00:00Z", "before 2000-01-01"),
        ("2024-02-30T00:00:00Z", "timestamp"),
        ("yesterday", "timestamp"),
    ],
)
def test_out_of_range_timestamps_are_rejected_with_a_reason(client: TestClient, ts: object, reason: str) -> None:
    body = _one(client, timestamp=ts)
    assert body["rejected"] == 1 and body["accepted"] == 0
    error = body["errors"][0]["error"]
    assert error.startswith("timestamp") and reason in error, error


@pytest.mark.parametrize("ts", ["2024-06-01T12:00:00+14:00", "2024-06-01T12:00:00-12:00", 1_717_243_200, "2024-06-01"])
def test_valid_timestamp_spellings_are_accepted(client: TestClient, ts: object) -> None:
    assert _one(client, timestamp=ts)["accepted"] == 1


# --- batch limits, content type, empty bodies -------------------------------------------------------

def test_items_batch_over_10000_is_413_with_envelope(client: TestClient) -> None:
    items = [{"item_id": f"x{i}"} for i in range(10_001)]
    r = client.post("/v1/items", json={"items": items})
    assert r.status_code == 413, r.text[:300]
    assert r.json()["error"] == "PayloadTooLarge" and "10000" in r.json()["detail"]


def test_items_batch_of_exactly_10000_is_accepted(client: TestClient) -> None:
    items = [{"item_id": f"x{i}"} for i in range(10_000)]
    assert client.post("/v1/items", json={"items": items}).json() == {"upserted": 10_000}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/xml", "application/jsonp"])
def test_non_json_content_type_is_415(client: TestClient, content_type: str) -> None:
    payload = json.dumps({"events": [{"user_id": "u", "item_id": "i", "type": "view"}]}).encode()
    r = client.post("/v1/events", content=payload, headers={"Content-Type": content_type})
    assert r.status_code == 415 and r.json()["error"] == "UnsupportedMediaType"
    r = client.put("/v1/items/a", content=b"{}", headers={"Content-Type": content_type})
    assert r.status_code == 415


def test_body_without_content_type_is_415(client: TestClient) -> None:
    r = client.post("/v1/events", content=b'{"events": []}', headers={"Content-Type": ""})
    assert r.status_code == 415


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.api+json"])
def test_json_variants_are_accepted(client: TestClient, content_type: str) -> None:
    payload = json.dumps({"events": [{"user_id": "u", "item_id": "i", "type": "view"}]}).encode()
    r = client.post("/v1/events", content=payload, headers={"Content-Type": content_type})
    assert r.status_code == 200 and r.json()["accepted"] == 1


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b'"events"', b"{}", b'{"events": {"a": 1}}'])
def test_empty_or_wrong_shaped_bodies_are_422(client: TestClient, raw: bytes) -> None:
    r = _raw(client, raw)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b'{"events": [}', b"{'events': []}"])
def test_malformed_bodies_are_400(client: TestClient, raw: bytes) -> None:
    r = _raw(client, raw)
    assert r.status_code == 400, r.text


def test_events_that_are_not_objects_are_422(client: TestClient) -> None:
    r = _raw(client, b'{"events": [1, "x", null]}')
    assert r.status_code == 422 and len(r.json()["detail"]) == 3
