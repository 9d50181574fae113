"""Placement CRUD and write-time validation through the API, on the real Postgres and Redis."""

from __future__ import annotations

from fastapi.testclient import TestClient

ITEMS = [{"item_id": f"i{k}", "title": f"Item {k}", "categories": ["c"], "price": 10.0 + k} for k in range(3)]
RULES = {
    "kind": "user", "n": 5,
    "filters": {"category": "c", "exclude_items": ["i2"], "attributes": {"color": "red"}},
    "boosts": [{"where": {"brand": "Acme", "min_price": 5}, "factor": 1.5}],
    "pins": [{"item_id": "i0", "position": 1}],
    "diversity": {"max_per_category": 2, "lambda": 0.7},
    "rotation": {"window_minutes": 30, "strength": 0.5},
}


def _catalog(client: TestClient) -> None:
    assert client.post("/v1/items", json={"items": ITEMS}).status_code == 200


def test_put_get_list_delete(client: TestClient) -> None:
    _catalog(client)
    put = client.put("/v1/placements/home.row", json=RULES)
    assert put.status_code == 200, put.json()
    body = put.json()
    assert body["name"] == "home.row" and body["diversity"] == {"max_per_category": 2, "lambda": 0.7}
    assert body["filters"]["attributes"] == {"color": ["red"]}
    assert client.get("/v1/placements/home.row").json() == body
    changed = client.put("/v1/placements/home.row", json={**RULES, "n": 8}).json()
    assert changed["n"] == 8
    assert [p["name"] for p in client.get("/v1/placements").json()["placements"]] == ["home.row"]
    assert client.delete("/v1/placements/home.row").status_code == 204
    missing = client.get("/v1/placements/home.row")
    assert missing.status_code == 404 and missing.json()["error"] == "PlacementNotFound"
    assert client.delete("/v1/placements/home.row").status_code == 404


def _error(client: TestClient, rules: dict[str, object]) -> list[dict[str, object]]:
    response = client.put("/v1/placements/p", json=rules)
    assert response.status_code == 422, response.json()
    assert response.json()["error"] == "ValidationError"
    detail: list[dict[str, object]] = response.json()["detail"]
    return detail


def test_unknown_fields_are_named(client: TestClient) -> None:
    detail = _error(client, {"diversity": {"max_per_categroy": 1}})
    assert detail[0]["loc"] == ["body", "diversity", "max_per_categroy"] and detail[0]["type"] == "extra_forbidden"
    detail = _error(client, {"boosts": [{"where": {"colour": "red"}, "factor": 2}]})
    assert detail[0]["loc"] == ["body", "boosts", 0, "where", "colour"]


def test_bad_ranges_are_rejected(client: TestClient) -> None:
    assert _error(client, {"n": 0})[0]["loc"] == ["body", "n"]
    assert _error(client, {"rotation": {"window_minutes": 10, "strength": 1.5}})[0]["loc"] == [
        "body", "rotation", "strength"]
    assert _error(client, {"diversity": {"lambda": -0.1}})[0]["loc"] == ["body", "diversity", "lambda"]
    assert _error(client, {"boosts": [{"where": {"brand": "x"}, "factor": 0}]})[0]["loc"] == [
        "body", "boosts", 0, "factor"]
    assert "min_price is above max_price" in str(_error(client, {"filters": {"min_price": 9, "max_price": 1}}))
    assert "at least one" in str(_error(client, {"boosts": [{"where": {}, "factor": 2}]}))
    assert "share a position" in str(_error(client, {"pins": [{"item_id": "a", "position": 1},
                                                              {"item_id": "b", "position": 1}]}))
    assert _error(client, {"kind": "basket"})[0]["loc"] == ["body", "kind"]


def test_unknown_and_deleted_items_are_rejected(client: TestClient) -> None:
    _catalog(client)
    assert client.delete("/v1/items/i1").status_code == 200
    detail = _error(client, {"pins": [{"item_id": "i0", "position": 1}, {"item_id": "nope", "position": 2}],
                             "filters": {"exclude_items": ["i1"]}})
    assert {(tuple(d["loc"]), d["type"]) for d in detail} == {  # type: ignore[arg-type]
        (("body", "pins", 1, "item_id"), "unknown_item"), (("body", "filters", "exclude_items", 0), "unknown_item")}
    assert client.get("/v1/placements/p").status_code == 404  # nothing stored

