"""`shopmind demo` leaves two placements and a running experiment with a real result."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from app.demo.loader import load_demo_if_empty
from app.settings import Settings


def test_the_demo_experiment_shows_the_better_variant(client: TestClient, settings: Settings) -> None:
    started = time.perf_counter()
    totals = load_demo_if_empty(settings, force=True)
    print(f"demo load: {time.perf_counter() - started:.1f} s, {totals}")
    names = [p["name"] for p in client.get("/v1/placements").json()["placements"]]
    assert names == ["home.row", "product.similar"]
    (exp,) = client.get("/v1/experiments").json()["experiments"]
    assert exp["id"] == totals["experiment"] and exp["status"] == "running"
    res = client.get(f"/v1/experiments/{exp['id']}/results").json()
    control, treatment = res["variants"]
    assert control["users"] > 600 and treatment["users"] > 600
    assert treatment["conversion"]["lift"] > 0 and treatment["conversion"]["p_value"] < 0.05
    assert treatment["ctr"]["lift"] > 0 and treatment["ctr"]["ci_low"] > 0
    assert not res["srm_warning"]
    served = client.get("/v1/users/user-00001/recommendations", params={"placement": "home.row"}).json()
    assert served["experiment"]["id"] == exp["id"]
