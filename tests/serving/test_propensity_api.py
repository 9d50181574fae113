from __future__ import annotations

import base64
import json

from tests.serving.conftest import LoadedShop


def test_user_propensity_is_a_calibrated_probability_with_factors(loaded: LoadedShop) -> None:
    user = loaded.shop.events[0]["user_id"]
    r = loaded.client.get(f"/v1/users/{user}/propensity?target=purchase")
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 <= body["probability"] <= 1 and 0 < body["percentile"] <= 1
    assert body["tier"] in {"low", "medium", "high"} and body["horizon_days"] == 30
    assert body["model_version"] == loaded.run.version and body["scored"] is True
    assert body["top_factors"] and all(f["text"] and f["direction"] in {"up", "down"} for f in body["top_factors"])


def test_churn_target_and_bad_target(loaded: LoadedShop) -> None:
    user = loaded.shop.users[1]["user_id"]
    assert 0 <= loaded.client.get(f"/v1/users/{user}/propensity?target=churn").json()["probability"] <= 1
    bad = loaded.client.get(f"/v1/users/{user}/propensity?target=teleport")
    assert bad.status_code == 400 and "teleport" in bad.json()["detail"]
    missing = loaded.client.get(f"/v1/users/{user}/propensity?target=purchase:nosuchcategory")
    assert missing.status_code == 503 and missing.json()["error"] == "ModelNotReady"


def test_batch_scores_flag_unknown_users(loaded: LoadedShop) -> None:
    active = list(dict.fromkeys(e["user_id"] for e in loaded.shop.events))
    users = [*active[:5], "nobody-at-all"]
    body = loaded.client.post("/v1/propensity", json={"user_ids": users, "target": "purchase"}).json()
    assert [s["user_id"] for s in body["scores"]] == users
    unknown = body["scores"][-1]
    assert unknown["scored"] is False and unknown["percentile"] is None
    base = json.loads(loaded.client.get("/v1/models").json()["meta"]["propensity_base_rates"])["purchase"]
    assert abs(unknown["probability"] - base) < 1e-9
    assert all(s["scored"] for s in body["scores"][:5])


def test_audience_pages_cover_everyone_above_the_threshold_once(loaded: LoadedShop) -> None:
    threshold = 0.05
    seen: list[str] = []
    probabilities: list[float] = []
    cursor = None
    for _ in range(100):
        url = f"/v1/audiences?target=purchase&min_probability={threshold}&limit=7"
        page = loaded.client.get(url + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [u["user_id"] for u in page["users"]]
        probabilities += [u["probability"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert probabilities == sorted(probabilities, reverse=True)
    everyone = loaded.client.post("/v1/propensity", json={
        "user_ids": [u["user_id"] for u in loaded.shop.users], "target": "purchase"}).json()["scores"]
    expected = {s["user_id"] for s in everyone if s["scored"] and s["probability"] >= threshold}
    assert set(seen) == expected and expected


def test_bad_cursor_is_400(loaded: LoadedShop) -> None:
    bad = base64.urlsafe_b64encode(b"not json").decode()
    r = loaded.client.get(f"/v1/audiences?cursor={bad}")
    assert r.status_code == 400 and r.json()["error"] == "BadRequest"


def test_lookalike_excludes_seeds(loaded: LoadedShop) -> None:
    seeds = list(dict.fromkeys(e["user_id"] for e in loaded.shop.events))[:3]
    body = loaded.client.post("/v1/audiences/lookalike", json={"user_ids": seeds, "n": 10}).json()
    assert body["seeds_found"] >= 1 and body["users"]
    assert not set(seeds) & {u["user_id"] for u in body["users"]}
    scores = [u["score"] for u in body["users"]]
    assert scores == sorted(scores, reverse=True)
