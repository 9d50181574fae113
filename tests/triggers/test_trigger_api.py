"""PUT/GET/DELETE /v1/triggers/{name}: validation per kind, replacement, deletion."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def test_put_get_list_delete(client: TestClient) -> None:
    r = client.put("/v1/triggers/cart", json={"kind": "cart_abandoned", "delay_seconds": 3600})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "cart" and body["cooldown_seconds"] == 86400
    assert body["conditions"] == {} and body["recommendations"] == {"placement": None, "n": 5}
    browse = client.put("/v1/triggers/browse", json={
        "kind": "browse_abandoned", "delay_seconds": 600, "conditions": {"min_views": 4, "category": "shoes"},
    }).json()
    assert browse["conditions"] == {"min_views": 4, "category": "shoes", "window_seconds": 86400}
    assert [t["name"] for t in client.get("/v1/triggers").json()["triggers"]] == ["browse", "cart"]
    assert client.get("/v1/triggers/cart").json()["delay_seconds"] == 3600
    replaced = client.put("/v1/triggers/cart", json={"kind": "cart_abandoned", "delay_seconds": 60,
                                                     "cooldown_seconds": 0}).json()
    assert replaced["delay_seconds"] == 60 and replaced["cooldown_seconds"] == 0
    assert client.delete("/v1/triggers/cart").status_code == 204
    missing = client.get("/v1/triggers/cart")
    assert missing.status_code == 404 and missing.json()["error"] == "TriggerNotFound"
    assert client.delete("/v1/triggers/cart").status_code == 404


@pytest.mark.parametrize(("body", "needle"), [
    ({"kind": "cart_abandonned", "delay_seconds": 1}, "kind"),
    ({"kind": "cart_abandoned"}, "delay_seconds"),
    ({"kind": "cart_abandoned", "delay_seconds": -1}, "greater than or equal to 0"),
    ({"kind": "cart_abandoned", "delay_seconds": 1, "conditions": {"min_views": 2}}, "conditions.min_views"),
    ({"kind": "browse_abandoned", "delay_seconds": 1, "conditions": {"min_views": 0}}, "conditions.min_views"),
    ({"kind": "propensity_crossed", "delay_seconds": 0, "conditions": {"target": "refund"}}, "conditions.target"),
    ({"kind": "cart_abandoned", "delay_seconds": 1, "recommendations": {"n": 0}}, "recommendations"),
    ({"kind": "cart_abandoned", "delay_seconds": 1, "recommendations": {"placement": "nope"}}, "Placement `nope`"),
    ({"kind": "cart_abandoned", "delay_seconds": 1, "extra": True}, "Extra inputs"),
])
def test_bad_input_is_a_precise_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    r = client.put("/v1/triggers/t1", json=body)
    assert r.status_code == 422, r.text
    assert needle in r.text


def test_bad_name_is_422(client: TestClient) -> None:
    assert client.put("/v1/triggers/has space", json={"kind": "cart_abandoned", "delay_seconds": 1}).status_code == 422


def test_a_placement_of_another_kind_is_refused(client: TestClient) -> None:
    assert client.put("/v1/placements/pdp", json={"kind": "item", "n": 4}).status_code == 200
    assert client.put("/v1/placements/email", json={"kind": "user", "n": 4}).status_code == 200
    wrong = client.put("/v1/triggers/t", json={"kind": "cart_abandoned", "delay_seconds": 1,
                                               "recommendations": {"placement": "pdp"}})
    assert wrong.status_code == 422 and "of kind `item`" in wrong.text
    right = client.put("/v1/triggers/t", json={"kind": "cart_abandoned", "delay_seconds": 1,
                                               "recommendations": {"placement": "email", "n": 2}})
    assert right.status_code == 200 and right.json()["recommendations"] == {"placement": "email", "n": 2}
