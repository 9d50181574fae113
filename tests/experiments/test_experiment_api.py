"""Experiment CRUD and write-time validation through the API, on the real Postgres and Redis."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.experiments.helpers import body, create, shop


def test_create_list_get_stop(client: TestClient) -> None:
    shop(client)
    out = create(client)
    assert out["status"] == "running" and out["placement"] == "home" and out["stopped_at"] is None
    assert [v["name"] for v in out["variants"]] == ["v0", "v1"]
    assert client.get(f"/v1/experiments/{out['id']}").json() == out
    assert [e["id"] for e in client.get("/v1/experiments").json()["experiments"]] == [out["id"]]
    stopped = client.post(f"/v1/experiments/{out['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert client.get(f"/v1/experiments/{out['id']}").json()["status"] == "stopped"
    missing = client.get("/v1/experiments/999999")
    assert missing.status_code == 404 and missing.json()["error"] == "ExperimentNotFound"
    assert client.post("/v1/experiments/999999/stop").status_code == 404


def _error(client: TestClient, payload: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/v1/experiments", json=payload)
    assert response.status_code == 422, response.json()
    assert response.json()["error"] == "ValidationError"
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


def test_unknown_placement_is_a_404(client: TestClient) -> None:
    response = client.post("/v1/experiments", json=body(placement="nowhere"))
    assert response.status_code == 404 and response.json()["error"] == "PlacementNotFound"


def test_validation_errors_are_precise(client: TestClient) -> None:
    shop(client)
    one = body()
    one["variants"] = one["variants"][:1]
    assert _error(client, one)[0]["loc"] == ["body", "variants"]
    zero = body(weights=(1, 0))
    assert _error(client, zero)[0]["loc"] == ["body", "variants", 1, "weight"]
    sliver = body(weights=(775121.05, 5e-324))  # found by the schema fuzzer: an arm nobody could reach
    assert "at least that share" in _error(client, sliver)[0]["msg"]
    twins = body()
    twins["variants"][1]["name"] = "v0"
    assert "share a name" in _error(client, twins)[0]["msg"]
    backwards = body()
    backwards["start"], backwards["end"] = backwards["end"], backwards["start"]
    assert "end is not after start" in _error(client, backwards)[0]["msg"]
    assert _error(client, body(primary_metric="clicks"))[0]["loc"] == ["body", "primary_metric"]
    typo = body()
    typo["variants"][1]["overrides"] = {"diversity": {"max_per_categroy": 1}}
    assert _error(client, typo)[0]["loc"] == ["body", "variants", 1, "overrides", "diversity", "max_per_categroy"]
    bad_strategy = body()
    bad_strategy["variants"][0]["overrides"] = {"strategy": "random"}
    assert _error(client, bad_strategy)[0]["loc"] == ["body", "variants", 0, "overrides", "strategy"]


def test_overrides_are_checked_like_placement_rules(client: TestClient) -> None:
    shop(client)
    ghost = body()
    ghost["variants"][1]["overrides"] = {"pins": [{"item_id": "ghost", "position": 1}]}
    detail = _error(client, ghost)
    assert detail[0]["loc"] == ["body", "variants", 1, "overrides", "pins", 0, "item_id"]
    assert detail[0]["type"] == "unknown_item"
    # a contradiction only the merged rules show: the variant pins what the placement excludes
    assert client.put("/v1/placements/home", json={"n": 3, "filters": {"exclude_items": ["i1"]}}).status_code == 200
    clash = body()
    clash["variants"][1]["overrides"] = {"pins": [{"item_id": "i1", "position": 1}]}
    assert "pinned and in filters.exclude_items" in _error(client, clash)[0]["msg"]
