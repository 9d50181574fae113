from __future__ import annotations

from tests.serving.conftest import LoadedShop


def test_a_new_item_gets_content_neighbours_at_once(loaded: LoadedShop) -> None:
    template = loaded.shop.items[4]
    twin = {k: v for k, v in template.items() if k != "item_id"}
    r = loaded.client.put("/v1/items/brand-new-twin", json=twin)
    assert r.status_code == 200, r.text
    similar = loaded.client.get("/v1/items/brand-new-twin/similar?mode=content&n=5").json()
    assert similar["strategy"] == "similar_content"
    assert similar["items"][0]["item_id"] == template["item_id"]  # its textual twin comes first
    # a shopper who looks at the new item gets content-driven recommendations right away
    loaded.client.post("/v1/events", json={"events": [
        {"user_id": "twin-fan", "item_id": "brand-new-twin", "type": "view"}]})
    recs = loaded.client.get("/v1/users/twin-fan/recommendations?n=5").json()
    assert template["item_id"] in {i["item_id"] for i in recs["items"]}
