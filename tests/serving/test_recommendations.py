from __future__ import annotations

import redis

from app.store.keys import Keys
from tests.serving.conftest import LoadedShop


def _active_user(loaded: LoadedShop) -> str:
    counts: dict[str, int] = {}
    for e in loaded.shop.events:
        counts[e["user_id"]] = counts.get(e["user_id"], 0) + 1
    return max(counts, key=lambda u: counts[u])


def test_hybrid_recommendations_have_reasons_and_skip_purchases(loaded: LoadedShop) -> None:
    user = _active_user(loaded)
    r = loaded.client.get(f"/v1/users/{user}/recommendations?n=8")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["strategy"] == "hybrid" and body["model_version"] == loaded.run.version
    assert body["recommendation_id"].startswith("hybrid.")
    items = body["items"]
    assert len(items) == 8 and all(i["reason"] for i in items)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    bought = {e["item_id"] for e in loaded.shop.events if e["user_id"] == user and e["type"] == "purchase"}
    assert not bought & {i["item_id"] for i in items}
    unavailable = {i["item_id"] for i in loaded.shop.items if not i["available"]}
    assert not unavailable & {i["item_id"] for i in items}


def test_exclude_seen_drops_every_interacted_item(loaded: LoadedShop) -> None:
    user = _active_user(loaded)
    seen = {e["item_id"] for e in loaded.shop.events if e["user_id"] == user}
    items = loaded.client.get(f"/v1/users/{user}/recommendations?n=10&exclude_seen=true").json()["items"]
    assert items and not seen & {i["item_id"] for i in items}


def test_a_new_event_changes_the_next_recommendations_without_rebuild(loaded: LoadedShop) -> None:
    user = "fresh-shopper"
    cold = loaded.client.get(f"/v1/users/{user}/recommendations?n=5").json()
    assert cold["strategy"] == "popularity_cold_start" and len(cold["items"]) == 5
    item = loaded.shop.items[0]["item_id"]
    assert loaded.client.post("/v1/events", json={"events": [
        {"user_id": user, "item_id": item, "type": "add_to_cart"}]}).json()["accepted"] == 1
    warm = loaded.client.get(f"/v1/users/{user}/recommendations?n=5").json()
    assert warm["strategy"] == "hybrid"
    assert [i["item_id"] for i in warm["items"]] != [i["item_id"] for i in cold["items"]]
    assert any(loaded.shop.items[0]["title"] in i["reason"] for i in warm["items"])


def test_filters_category_and_price(loaded: LoadedShop) -> None:
    user = _active_user(loaded)
    category = loaded.shop.items[0]["categories"][0]
    items = loaded.client.get(f"/v1/users/{user}/recommendations?n=5&category={category}").json()["items"]
    by_id = {i["item_id"]: i for i in loaded.shop.items}
    assert items and all(category in by_id[i["item_id"]]["categories"] for i in items)
    cheap = loaded.client.get(f"/v1/users/{user}/recommendations?n=5&max_price=30").json()["items"]
    assert all(by_id[i["item_id"]]["price"] <= 30 for i in cheap)
    bad = loaded.client.get(f"/v1/users/{user}/recommendations?min_price=50&max_price=10")
    assert bad.status_code == 400 and bad.json()["error"] == "BadRequest"


def test_similar_items_modes_and_session(loaded: LoadedShop) -> None:
    item = loaded.shop.items[1]["item_id"]
    for mode in ("hybrid", "cf", "content"):
        body = loaded.client.get(f"/v1/items/{item}/similar?n=5&mode={mode}").json()
        assert body["items"] and item not in {i["item_id"] for i in body["items"]}
    content = loaded.client.get(f"/v1/items/{item}/similar?n=5&mode=content").json()["items"]
    assert all(i["sources"]["content"] > 0 for i in content if i["sources"]["popularity"] == 0)
    session = loaded.client.post("/v1/recommendations/session", json={"item_ids": [item], "n": 5}).json()
    assert len(session["items"]) == 5 and item not in {i["item_id"] for i in session["items"]}


def test_similar_users(loaded: LoadedShop) -> None:
    user = _active_user(loaded)
    body = loaded.client.get(f"/v1/users/{user}/similar?n=5").json()
    assert 0 < len(body["users"]) <= 5 and user not in {u["user_id"] for u in body["users"]}


def test_events_with_recommendation_id_are_counted_per_strategy(
    loaded: LoadedShop, rds: redis.Redis
) -> None:
    user = _active_user(loaded)
    recs = loaded.client.get(f"/v1/users/{user}/recommendations?n=3").json()
    loaded.client.post("/v1/events", json={"events": [
        {"user_id": user, "item_id": recs["items"][0]["item_id"], "type": "click",
         "recommendation_id": recs["recommendation_id"]}]})
    stats = rds.hgetall(Keys.of(loaded.settings).recommendation_stats("hybrid"))
    assert stats == {b"click": b"1"}


def test_models_endpoint_shows_validation_metrics(loaded: LoadedShop) -> None:
    body = loaded.client.get("/v1/models").json()
    assert body["current_version"] == loaded.run.version
    metrics = body["current"]["metrics"]["recommend"]
    assert 0 <= metrics["hybrid.ndcg@10"] <= 1 and "popularity.ndcg@10" in metrics
    assert body["current"]["stages"]["load"] >= 0


def test_rebuild_endpoint_queues_a_job(loaded: LoadedShop, rds: redis.Redis) -> None:
    r = loaded.client.post("/v1/models/rebuild")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    queued = rds.lrange(Keys.of(loaded.settings).rebuild_queue(), 0, -1)
    assert queued == [str(r.json()["job_id"]).encode()]


def test_a_bad_query_string_is_a_precise_4xx(loaded: LoadedShop) -> None:
    user = _active_user(loaded)
    for query, field in [("n=0", "n"), ("n=ten", "n"), ("alpha=2", "alpha"), ("exclude_seen=maybe", "exclude_seen"),
                         ("category=", "category")]:
        r = loaded.client.get(f"/v1/users/{user}/recommendations?{query}")
        assert r.status_code == 422, (query, r.text)
        body = r.json()
        assert body["error"] == "ValidationError" and [e["loc"] for e in body["detail"]] == [["query", field]]
    r = loaded.client.get(f"/v1/users/{user}/recommendations?min_price=50&max_price=10")
    assert r.status_code == 400 and "min_price" in r.json()["detail"]
    # a repeated name keeps its last value; unknown names are ignored
    r = loaded.client.get(f"/v1/users/{user}/recommendations?n=2&n=3&utm_source=mail")
    assert r.status_code == 200 and len(r.json()["items"]) == 3


def test_an_item_made_unavailable_leaves_the_next_list(loaded: LoadedShop) -> None:
    """Metadata is kept in process between catalog writes: the write itself must end that."""
    user = _active_user(loaded)
    before = loaded.client.get(f"/v1/users/{user}/recommendations?n=5").json()["items"]
    gone = before[-1]["item_id"]
    item = next(i for i in loaded.shop.items if i["item_id"] == gone)
    update = {**{k: v for k, v in item.items() if k != "item_id"}, "available": False}
    assert loaded.client.put(f"/v1/items/{gone}", json=update).status_code == 200
    after = loaded.client.get(f"/v1/users/{user}/recommendations?n=20").json()["items"]
    assert after and gone not in {i["item_id"] for i in after}
    shown = loaded.client.get(f"/v1/users/{user}/recommendations?n=20&available_only=false").json()["items"]
    assert gone in {i["item_id"] for i in shown}


# Changes shared state: keep it last in the module.
def test_deleted_item_disappears_from_every_list_at_once(loaded: LoadedShop) -> None:
    user = _active_user(loaded)
    first = loaded.client.get(f"/v1/users/{user}/recommendations?n=5").json()["items"][0]["item_id"]
    assert loaded.client.delete(f"/v1/items/{first}").status_code == 200
    after = loaded.client.get(f"/v1/users/{user}/recommendations?n=20").json()["items"]
    assert first not in {i["item_id"] for i in after}
    for other in loaded.shop.items[:10]:
        similar = loaded.client.get(f"/v1/items/{other['item_id']}/similar?n=20").json()
        assert first not in {i["item_id"] for i in similar.get("items", [])}
    assert loaded.client.get(f"/v1/items/{first}/similar").status_code == 404
    assert loaded.client.get(f"/v1/items/{first}").status_code == 404
