"""Every rule through GET/POST recommendation routes on a loaded, rebuilt shop (real Postgres, Redis)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis

from app.store.keys import Keys
from tests.serving.conftest import LoadedShop, loaded

__all__ = ["loaded"]


def _active_users(shop: LoadedShop, k: int) -> list[str]:
    counts = Counter(e["user_id"] for e in shop.shop.events)
    return [u for u, _ in counts.most_common(k)]


def _meta(shop: LoadedShop) -> dict[str, dict[str, Any]]:
    return {i["item_id"]: i for i in shop.shop.items}


def _recs(shop: LoadedShop, user: str, **params: Any) -> dict[str, Any]:
    response = shop.client.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


def _put(shop: LoadedShop, name: str, rules: dict[str, Any]) -> None:
    response = shop.client.put(f"/v1/placements/{name}", json=rules)
    assert response.status_code == 200, response.json()


def test_pin_takes_its_position_and_the_placement_is_echoed(loaded: LoadedShop) -> None:
    user = _active_users(loaded, 1)[0]
    plain = _recs(loaded, user, n=20)
    assert plain["placement"] is None
    pinned = plain["items"][-1]["item_id"]  # an eligible item far down the list
    _put(loaded, "pin", {"n": 5, "pins": [{"item_id": pinned, "position": 2}]})
    body = _recs(loaded, user, placement="pin")
    assert body["placement"] == "pin" and len(body["items"]) == 5
    assert body["items"][1]["item_id"] == pinned
    assert [i["item_id"] for i in body["items"]].count(pinned) == 1
    # an edit applies at the next request: the pin moves to the first slot
    _put(loaded, "pin", {"n": 5, "pins": [{"item_id": pinned, "position": 1}]})
    assert _recs(loaded, user, placement="pin")["items"][0]["item_id"] == pinned


def test_an_ineligible_pin_is_not_shown(loaded: LoadedShop) -> None:
    user = _active_users(loaded, 1)[0]
    meta = _meta(loaded)
    other = next(i for i, m in meta.items() if m["categories"][0] != "shoes")
    _put(loaded, "pin-filtered", {"n": 5, "filters": {"category": "shoes"}, "pins": [{"item_id": other, "position": 1}]})
    body = _recs(loaded, user, placement="pin-filtered")
    assert other not in [i["item_id"] for i in body["items"]]
    assert all("shoes" in meta[i["item_id"]]["categories"] for i in body["items"])


def test_boost_multiplies_scores_and_reorders(loaded: LoadedShop) -> None:
    user = _active_users(loaded, 2)[1]
    meta = _meta(loaded)
    plain = {i["item_id"]: i["score"] for i in _recs(loaded, user, n=50)["items"]}
    ranked = list(plain)
    brand = next(meta[i]["brand"] for i in ranked[8:] if meta[i]["brand"] != meta[ranked[0]]["brand"])
    _put(loaded, "boost", {"n": 10, "boosts": [{"where": {"brand": brand}, "factor": 100}]})
    items = _recs(loaded, user, placement="boost")["items"]
    boosted = {i: s * (100 if meta[i]["brand"] == brand else 1) for i, s in plain.items()}
    assert items[0]["item_id"] == max(boosted, key=boosted.__getitem__)
    assert meta[items[0]["item_id"]]["brand"] == brand
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    for item in items:
        factor = 100 if meta[item["item_id"]]["brand"] == brand else 1
        assert item["score"] == pytest.approx(plain[item["item_id"]] * factor, rel=1e-4, abs=1e-5)


def test_max_per_category_and_mmr(loaded: LoadedShop) -> None:
    user = _active_users(loaded, 3)[2]
    meta = _meta(loaded)
    _put(loaded, "diverse", {"n": 6, "diversity": {"max_per_category": 1, "lambda": 0.5}})
    items = _recs(loaded, user, placement="diverse")["items"]
    categories = [meta[i["item_id"]]["categories"][0] for i in items]
    assert len(items) == 6 and len(set(categories)) == 6


def test_rotation_demotes_what_was_just_shown(loaded: LoadedShop, rds: redis.Redis) -> None:
    user = _active_users(loaded, 4)[3]
    _put(loaded, "rotating", {"n": 5, "rotation": {"window_minutes": 60, "strength": 1.0}})
    first = {i["item_id"] for i in _recs(loaded, user, placement="rotating")["items"]}
    second = {i["item_id"] for i in _recs(loaded, user, placement="rotating")["items"]}
    third = {i["item_id"] for i in _recs(loaded, user, placement="rotating")["items"]}
    assert len(first) == len(second) == len(third) == 5
    assert not first & second and not third & (first | second)
    shown = rds.zrange(Keys.of(loaded.settings).shown(user), 0, -1)
    assert {m.decode() for m in shown} == {f"rotating|{i}" for i in first | second | third}
    # another placement (no rotation) is not affected, nor is the plain route
    plain = {i["item_id"] for i in _recs(loaded, user, n=5)["items"]}
    assert plain == first


def test_exclusions_and_attribute_filters(loaded: LoadedShop) -> None:
    user = _active_users(loaded, 5)[4]
    meta = _meta(loaded)
    top = [i["item_id"] for i in _recs(loaded, user, n=3)["items"]]
    _put(loaded, "excl", {"n": 5, "filters": {"exclude_items": top}})
    items = [i["item_id"] for i in _recs(loaded, user, placement="excl")["items"]]
    assert len(items) == 5 and not set(items) & set(top)
    _put(loaded, "green", {"n": 4, "filters": {"attributes": {"color": "green"}}})
    items = [i["item_id"] for i in _recs(loaded, user, placement="green")["items"]]
    assert items and all(meta[i]["attributes"].get("color") == "green" for i in items)


def test_unknown_placement_and_wrong_kind(loaded: LoadedShop) -> None:
    user = _active_users(loaded, 1)[0]
    response = loaded.client.get(f"/v1/users/{user}/recommendations", params={"placement": "nope"})
    assert response.status_code == 404 and response.json()["error"] == "PlacementNotFound"
    _put(loaded, "pdp", {"kind": "item", "n": 4, "diversity": {"max_per_category": 2}})
    response = loaded.client.get(f"/v1/users/{user}/recommendations", params={"placement": "pdp"})
    assert response.status_code == 422 and "kind `item`" in response.json()["detail"]


def test_item_and_session_routes_take_placements(loaded: LoadedShop) -> None:
    meta = _meta(loaded)
    item = loaded.shop.items[0]["item_id"]
    _put(loaded, "pdp2", {"kind": "item", "n": 4, "diversity": {"max_per_category": 1}})
    body = loaded.client.get(f"/v1/items/{item}/similar", params={"placement": "pdp2"}).json()
    assert body["placement"] == "pdp2" and len(body["items"]) == 4
    assert len({meta[i["item_id"]]["categories"][0] for i in body["items"]}) == 4
    basket = [i["item_id"] for i in loaded.shop.items[:2]]
    pin = loaded.shop.items[5]["item_id"]
    _put(loaded, "cart", {"kind": "cart", "n": 3, "pins": [{"item_id": pin, "position": 3},
                                                          {"item_id": basket[0], "position": 1}]})
    body = loaded.client.post("/v1/recommendations/session", params={"placement": "cart"},
                              json={"item_ids": basket}).json()
    ids = [i["item_id"] for i in body["items"]]
    assert body["placement"] == "cart" and len(ids) == 3 and ids[2] == pin
    assert not set(ids) & set(basket)  # a pinned basket item is not offered back
