"""Customer value through the API: per shopper, in batches, as a ranked audience, and erased with the shopper."""

from __future__ import annotations

import json

from tests.serving.conftest import LoadedShop


def _buyers(loaded: LoadedShop) -> list[str]:
    return list(dict.fromkeys(e["user_id"] for e in loaded.shop.events if e["type"] == "purchase"))


def test_a_customer_has_a_value_with_its_model_version(loaded: LoadedShop) -> None:
    r = loaded.client.get(f"/v1/users/{_buyers(loaded)[0]}/value")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scored"] is True and body["model_version"] == loaded.run.version and body["horizon_days"] == 90
    assert body["expected_purchases"] >= 0 and body["expected_revenue"] >= 0
    assert 0 < body["p_alive"] <= 1 and 0 < body["percentile"] <= 1
    metrics = loaded.run.metrics["value"]
    assert metrics["status"] == "ok" and {"mae", "spearman", "top10_share"} <= set(metrics[metrics["kind"]])


def test_unknown_shoppers_get_the_new_customer_mean_in_asked_order(loaded: LoadedShop) -> None:
    buyers = _buyers(loaded)[:3]
    asked = [buyers[0], "nobody-at-all", *buyers[1:]]
    body = loaded.client.post("/v1/value", json={"user_ids": asked}).json()
    assert [v["user_id"] for v in body["values"]] == asked and body["model_version"] == loaded.run.version
    unknown = body["values"][1]
    new = json.loads(loaded.client.get("/v1/models").json()["meta"]["value_new_customer"])
    assert unknown["scored"] is False and unknown["percentile"] is None
    assert abs(unknown["expected_revenue"] - new["expected_revenue"]) < 1e-9
    assert [v["scored"] for v in body["values"]] == [True, False, True, True]
    single = loaded.client.get("/v1/users/nobody-at-all/value").json()
    assert single["scored"] is False and single["expected_purchases"] == unknown["expected_purchases"]


def test_bad_value_requests_are_precise_4xx(loaded: LoadedShop) -> None:
    c = loaded.client
    assert c.post("/v1/value", json={"user_ids": []}).status_code == 422
    assert c.post("/v1/value", json={"user_ids": [f"u{k}" for k in range(10_001)]}).status_code == 422
    assert c.post("/v1/value", json={"user_ids": ["a"], "target": "x"}).status_code == 422  # unknown field
    assert c.post("/v1/value", json={"user_ids": ["bad\u0001id"]}).status_code == 422
    r = c.get("/v1/audiences?target=value&min_probability=0.5")
    assert r.status_code == 400 and "min_revenue" in r.json()["detail"]
    assert c.get("/v1/audiences?target=purchase&min_revenue=5").status_code == 400
    assert c.get("/v1/audiences?target=value&min_revenue=-1").status_code == 422


def test_value_audience_pages_rank_every_customer_once(loaded: LoadedShop) -> None:
    seen: list[str] = []
    revenue: list[float] = []
    cursor = None
    for _ in range(200):
        url = "/v1/audiences?target=value&limit=9" + (f"&cursor={cursor}" if cursor else "")
        page = loaded.client.get(url).json()
        assert page["target"] == "value" and page["horizon_days"] == 90
        seen += [u["user_id"] for u in page["users"]]
        revenue += [u["expected_revenue"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and revenue == sorted(revenue, reverse=True)
    assert set(seen) == set(_buyers(loaded))  # every shopper with a purchase, and only them
    above = loaded.client.get(f"/v1/audiences?target=value&min_revenue={revenue[len(revenue) // 2]}").json()
    assert 0 < len(above["users"]) < len(seen) and all(u["expected_revenue"] >= revenue[len(revenue) // 2]
                                                       for u in above["users"])


def test_an_erased_shopper_has_no_value_left(loaded: LoadedShop) -> None:
    gone = _buyers(loaded)[-1]
    assert loaded.client.get(f"/v1/users/{gone}/value").json()["scored"] is True
    assert loaded.client.delete(f"/v1/users/{gone}").status_code in (200, 204)
    assert loaded.client.get(f"/v1/users/{gone}/value").json()["scored"] is False
    ranked = loaded.client.get("/v1/audiences?target=value&limit=10000").json()["users"]
    assert gone not in {u["user_id"] for u in ranked}
