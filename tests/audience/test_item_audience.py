"""GET /v1/items/{item_id}/audience after a real rebuild: who will buy this, buyers apart, paged."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.settings import Settings
from tests.audience.conftest import BUYERS, CASUALS, COOKS, FANS, TARGET


def _audience(client: TestClient, item: str = TARGET, **params: Any) -> dict[str, Any]:
    r = client.get(f"/v1/items/{item}/audience", params={"n": 1000, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [u["user_id"] for u in body["users"]]


def test_shoppers_whose_history_neighbours_the_item_rank_first(built: TestClient) -> None:
    body = _audience(built)
    ids = _ids(body)
    scores = [u["score"] for u in body["users"]]
    # fans hold g1/g2, bought with g0 (CF); casuals only g3..g7, like it in content alone; cooks nothing
    assert set(ids[:len(FANS)]) == set(FANS)
    assert set(ids[len(FANS):]) == set(CASUALS)
    assert not set(ids) & set(COOKS)
    assert min(scores[:len(FANS)]) > max(scores[len(FANS):]) > 0
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    assert body["model_version"] == built.get("/v1/models").json()["current_version"]
    assert body["next_cursor"] is None and body["include_buyers"] is False
    # a cook's own items have an audience of cooks: the worlds do not mix
    kitchen = _ids(_audience(built, "k0"))
    assert kitchen and set(kitchen) <= set(COOKS)


def test_buyers_are_excluded_unless_asked_for(built: TestClient) -> None:
    assert not set(_ids(_audience(built))) & set(BUYERS)
    body = _audience(built, include_buyers="true")
    flagged = {u["user_id"] for u in body["users"] if u["bought"]}
    assert flagged == set(BUYERS)
    assert set(_ids(body)) == set(FANS) | set(BUYERS) | set(CASUALS)
    scores = [u["score"] for u in body["users"]]
    assert scores == sorted(scores, reverse=True)


def test_a_purchase_since_the_rebuild_counts_at_once(built: TestClient) -> None:
    fan = FANS[3]
    assert built.post("/v1/events", json={"events": [
        {"user_id": fan, "item_id": TARGET, "type": "purchase"}]}).json()["accepted"] == 1
    assert fan not in _ids(_audience(built))
    kept = {u["user_id"]: u for u in _audience(built, include_buyers="true")["users"]}
    assert kept[fan]["bought"] is True


def test_each_member_carries_their_purchase_probability(built: TestClient) -> None:
    body = _audience(built, n=5)
    assert body["probability_target"] == "purchase" and body["horizon_days"] == 30.0
    for member in body["users"]:
        mine = built.get(f"/v1/users/{member['user_id']}/propensity").json()
        assert member["probability"] == mine["probability"]


def test_pages_follow_the_cursor_and_min_score_cuts(built: TestClient) -> None:
    whole = _ids(_audience(built, include_buyers="true"))
    paged: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"n": 4, "include_buyers": "true"}
        if cursor:
            params["cursor"] = cursor
        page = _audience(built, **params)
        assert len(page["users"]) <= 4
        paged += _ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == whole
    fans_only = _audience(built, min_score=0.5)
    assert set(_ids(fans_only)) == set(FANS) and all(u["score"] >= 0.5 for u in fans_only["users"])


def test_erased_shoppers_never_appear(built: TestClient) -> None:
    gone = FANS[0]
    assert built.delete(f"/v1/users/{gone}").status_code == 200
    assert gone not in _ids(_audience(built, include_buyers="true"))
    page = _audience(built, n=len(FANS) - 1)
    assert len(page["users"]) == len(FANS) - 1 and gone not in _ids(page)
    assert page["next_cursor"] is not None  # the casuals follow: the blank does not end the paging
    assert set(_ids(_audience(built, n=100, cursor=page["next_cursor"]))) == set(CASUALS)


def test_a_merged_shopper_appears_under_the_surviving_id(built: TestClient, settings: Settings) -> None:
    from app.worker.pipeline import rebuild

    source, survivor = FANS[2], "known-customer-2"
    r = built.post(f"/v1/users/{survivor}/merge", json={"from_user_id": source})
    assert r.status_code == 200, r.text
    rebuild(settings, trigger="test")
    ids = _ids(_audience(built))
    assert survivor in ids[:len(FANS)] and source not in ids


def test_unknown_item_is_404_and_bad_parameters_422(built: TestClient) -> None:
    r = built.get("/v1/items/nope/audience")
    assert r.status_code == 404 and r.json()["error"] == "ItemNotFound" and "nope" in r.json()["detail"]
    for params in ({"n": 0}, {"n": 10_001}, {"min_score": 1.5}, {"min_score": -1}, {"include_buyers": "maybe"}):
        r = built.get(f"/v1/items/{TARGET}/audience", params=params)
        assert r.status_code == 422, (params, r.text)
        assert next(iter(params)) in r.text
    r = built.get(f"/v1/items/{TARGET}/audience", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400 and "cursor" in r.json()["detail"]


def test_no_model_is_the_same_503_as_the_other_model_routes(client: TestClient) -> None:
    assert client.put(f"/v1/items/{TARGET}", json={"title": "garden tool"}).status_code in (200, 201)
    r = client.get(f"/v1/items/{TARGET}/audience")
    other = client.get("/v1/audiences")
    assert r.status_code == other.status_code == 503
    assert r.json() == other.json() and r.json()["error"] == "ModelNotReady"
    assert r.headers["retry-after"] == other.headers["retry-after"]


def test_an_item_new_since_the_rebuild_has_an_empty_audience(built: TestClient) -> None:
    assert built.put("/v1/items/g-new", json={"title": "garden tool"}).status_code in (200, 201)
    body = _audience(built, "g-new", n=3)
    assert body["users"] == [] and body["next_cursor"] is None
