"""Assignment, exposure logging and results through the API on the real Postgres and Redis."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from scipy import stats as sps

from app.experiments import assign, exposures
from app.store.keys import Keys
from app.worker import loop
from tests.experiments.helpers import create, serve, shop


def _salt(pg: psycopg.Connection[tuple[object, ...]], experiment_id: int) -> str:
    row = pg.execute("SELECT salt FROM experiments WHERE id = %s", (experiment_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_assignment_is_stable_over_10000_users_and_follows_the_weights() -> None:
    users = [f"user-{k}" for k in range(10_000)]
    cuts = assign.bounds([1, 3])
    first = np.array([assign.variant_index(42, "salt", u, cuts) for u in users])
    again = np.array([assign.variant_index(42, "salt", u, cuts) for u in users])
    assert (first == again).all()
    counts = np.bincount(first, minlength=2)
    assert sps.chisquare(counts, [2500, 7500]).pvalue > 0.001
    assert abs(counts[1] / 10_000 - 0.75) < 0.02
    # another salt re-deals the shoppers independently
    other = np.array([assign.variant_index(42, "pepper", u, cuts) for u in users])
    assert 0.3 < np.mean(first != other) < 0.45  # 2 x 0.25 x 0.75 = 0.375 expected


def test_served_variant_is_the_hash_and_carries_the_experiment(
    client: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    shop(client)
    exp = create(client, weights=(1, 1))
    cuts = assign.bounds([1, 1])
    salt = _salt(pg, exp["id"])
    for k in range(40):
        user = f"s{k}"
        out = serve(client, user)
        index = assign.variant_index(exp["id"], salt, user, cuts)
        assert out["experiment"] == {"id": exp["id"], "variant": f"v{index}"}
        assert len(out["items"]) == 3 + index  # the variant's `n` override is applied
        strategy, token, tag = out["recommendation_id"].split(".")
        assert tag == f"e{exp['id']}v{index}" and len(token) == 16 and strategy
        assert serve(client, user)["experiment"]["variant"] == f"v{index}"
    assert client.post(f"/v1/experiments/{exp['id']}/stop").status_code == 200
    after = serve(client, "s0")
    assert after["experiment"] is None and len(after["items"]) == 3


def test_the_known_shoppers_variant_survives_a_merge(
    client: TestClient, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    shop(client)
    exp = create(client, weights=(1, 1))
    salt, cuts = _salt(pg, exp["id"]), assign.bounds([1, 1])
    # an anonymous id dealt the other variant than the known one, so the test can fail
    known = "known-1"
    anon = next(f"anon-{k}" for k in range(100) if assign.variant_index(exp["id"], salt, f"anon-{k}", cuts)
                != assign.variant_index(exp["id"], salt, known, cuts))
    before = serve(client, known)["experiment"]["variant"]
    assert serve(client, anon)["experiment"]["variant"] != before
    events = [{"event_id": f"m-{u}", "user_id": u, "item_id": "i1", "type": "view"} for u in (anon, known)]
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    assert client.post(f"/v1/users/{known}/merge", json={"from_user_id": anon}).status_code == 200
    assert serve(client, known)["experiment"]["variant"] == before


def _event(event_id: str, user: str, kind: str, rec: str | None, price: float | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": event_id, "user_id": user, "item_id": "i2", "type": kind}
    if rec is not None:
        event["recommendation_id"] = rec
    if price is not None:
        event["price"] = price
    return event


def test_exposures_are_flushed_and_results_match_a_hand_computed_case(
    client: TestClient, pg: psycopg.Connection[tuple[object, ...]], rds: redis.Redis, settings: Any
) -> None:
    shop(client)
    exp = create(client, weights=(1, 1))
    served: dict[str, list[dict[str, Any]]] = {}
    for k in range(60):
        user = f"r{k}"
        served[user] = [serve(client, user) for _ in range(1 + k % 3)]
    keys = Keys.of(settings)
    assert rds.llen(keys.experiment_exposures()) == sum(len(v) for v in served.values())
    assert pg.execute("SELECT count(*) FROM experiment_exposures").fetchone() == (0,)  # nothing per request
    # shoppers with an even number click the first list; every third buys from it for 20 + k
    events: list[dict[str, Any]] = []
    truth: dict[str, dict[str, list[float]]] = {"v0": {}, "v1": {}}
    for k, (user, lists) in enumerate(served.items()):
        rec, variant = lists[0]["recommendation_id"], lists[0]["experiment"]["variant"]
        clicks = 1 if k % 2 == 0 else 0
        revenue = 20.0 + k if k % 3 == 0 else 0.0
        if clicks:
            events.append(_event(f"c{k}", user, "click", rec))
        if revenue:
            events.append(_event(f"p{k}", user, "purchase", rec, revenue))
        truth[variant].setdefault("exposures", []).append(len(lists))
        truth[variant].setdefault("clicks", []).append(clicks)
        truth[variant].setdefault("revenue", []).append(revenue)
    # r1 (k = 1, no purchase above) buys without a recommendation_id: counts per user, not attributed
    events.append(_event("unattributed", "r1", "purchase", None, 5.0))
    r1_variant = served["r1"][0]["experiment"]["variant"]
    r1_position = [u for u in served if served[u][0]["experiment"]["variant"] == r1_variant].index("r1")
    truth[r1_variant]["revenue"][r1_position] = 5.0
    truth[r1_variant].setdefault("unattributed", []).append(1)
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)

    response = client.get(f"/v1/experiments/{exp['id']}/results")
    assert response.status_code == 200, response.json()
    res = response.json()
    assert rds.llen(keys.experiment_exposures()) == 0
    assert pg.execute("SELECT count(*) FROM experiment_exposures").fetchone() == (sum(map(len, served.values())),)
    v0, v1 = res["variants"]
    for out, name in ((v0, "v0"), (v1, "v1")):
        t = {k: np.array(v) for k, v in truth[name].items()}
        assert out["users"] == len(t["exposures"]) and out["exposures"] == t["exposures"].sum()
        assert out["clicks"] == t["clicks"].sum()
        assert out["purchases"] == (t["revenue"] > 0).sum() - len(truth[name].get("unattributed", []))
        assert out["conversion"]["value"] == pytest.approx(np.mean(t["revenue"] > 0))
        assert out["revenue_per_user"]["value"] == pytest.approx(t["revenue"].mean())
        assert out["ctr"]["value"] == pytest.approx(t["clicks"].sum() / t["exposures"].sum())
    c, tr = (np.array(truth[n]["revenue"]) for n in ("v0", "v1"))
    welch = sps.ttest_ind(tr, c, equal_var=False)
    assert v1["revenue_per_user"]["p_value"] == pytest.approx(welch.pvalue)
    assert v1["revenue_per_user"]["lift"] == pytest.approx(tr.mean() / c.mean() - 1)
    assert v0["conversion"]["lift"] is None  # control
    assert res["srm_p_value"] == pytest.approx(sps.chisquare([v0["users"], v1["users"]]).pvalue)
    assert any("Underpowered" in n for n in res["notes"])  # 60 shoppers cannot show a 10 % lift


def test_srm_flags_a_skewed_split(client: TestClient, rds: redis.Redis, settings: Any) -> None:
    shop(client)
    exp = create(client, weights=(1, 1))
    keys = Keys.of(settings)
    # what a broken client would log: control shown to 300 shoppers, the treatment to 200
    lines = [exposures.entry(exp["id"], "v0" if k < 300 else "v1", f"{k:016x}", f"u{k}", time.time())
             for k in range(500)]
    rds.rpush(keys.experiment_exposures(), *lines)
    res = client.get(f"/v1/experiments/{exp['id']}/results").json()
    assert [v["users"] for v in res["variants"]] == [300, 200]
    assert res["srm_warning"] is True and res["srm_p_value"] == pytest.approx(sps.chisquare([300, 200]).pvalue)
    assert any("Sample ratio mismatch" in n for n in res["notes"])


def test_the_workers_flush_copies_in_batches_and_trims(
    client: TestClient, pg: psycopg.Connection[tuple[object, ...]], rds: redis.Redis, settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop(client)
    exp = create(client, weights=(1, 1))
    for k in range(25):
        serve(client, f"w{k}")
    keys = Keys.of(settings)
    monkeypatch.setattr(exposures, "BATCH", 10)  # three passes: 10, 10, 5
    assert loop.flush_exposures(settings.database_url, rds, keys) == 25
    assert rds.llen(keys.experiment_exposures()) == 0
    rows = pg.execute("SELECT count(*), count(DISTINCT user_id) FROM experiment_exposures WHERE experiment_id = %s",
                      (exp["id"],)).fetchone()
    assert rows == (25, 25)
    assert loop.flush_exposures(settings.database_url, rds, keys) == 0


def test_session_route_takes_part_only_when_it_names_the_shopper(client: TestClient) -> None:
    shop(client)
    assert client.put("/v1/placements/cart", json={"kind": "cart", "n": 3}).status_code == 200
    exp = create(client, placement="cart", weights=(1, 1))
    named = client.post("/v1/recommendations/session", params={"placement": "cart"},
                        json={"item_ids": ["i1"], "user_id": "basket-1"})
    assert named.status_code == 200, named.json()
    assert named.json()["experiment"]["id"] == exp["id"]
    anonymous = client.post("/v1/recommendations/session", params={"placement": "cart"}, json={"item_ids": ["i1"]})
    assert anonymous.status_code == 200 and anonymous.json()["experiment"] is None
    assert anonymous.json()["placement"] == "cart"
