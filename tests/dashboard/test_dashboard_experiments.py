"""The dashboard's panel per running experiment: variants' metrics, CIs and the SRM warning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.experiments import exposures
from app.main import create_app
from app.settings import Settings
from app.store.keys import Keys
from tests.conftest import ADMIN_KEY
from tests.experiments.helpers import create, shop


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), follow_redirects=False) as c:
        yield c


def test_a_running_experiment_has_a_panel_with_cis_and_the_srm_warning(
    client: TestClient, web: TestClient, rds: redis.Redis, settings: Settings
) -> None:
    shop(client)
    exp: dict[str, Any] = create(client, weights=(1, 1))
    stopped = create(client, weights=(1, 1))
    assert client.post(f"/v1/experiments/{stopped['id']}/stop").status_code == 200
    keys = Keys.of(settings)
    # 300 shoppers in control, 200 in the treatment (a skew the weights do not explain); a fifth of
    # the control buys, two fifths of the treatment
    now = time.time()
    lines = [exposures.entry(exp["id"], "v0" if k < 300 else "v1", f"{k:016x}", f"u{k}", now - 60)
             for k in range(500)]
    rds.rpush(keys.experiment_exposures(), *lines)
    buys = [{"event_id": f"b{k}", "user_id": f"u{k}", "item_id": "i1", "type": "purchase", "price": 10.0}
            for k in range(500) if (k < 300 and k % 5 == 0) or (k >= 300 and k % 5 < 2)]
    assert client.post("/v1/events", json={"events": buys}).json()["accepted"] == len(buys)
    results = client.get(f"/v1/experiments/{exp['id']}/results").json()  # flushes the exposures
    treatment = results["variants"][1]

    assert web.get("/dashboard", params={"key": ADMIN_KEY}).status_code == 303
    page = web.get("/dashboard")
    assert page.status_code == 200
    assert f'id="experiment-{exp["id"]}"' in page.text and f'id="experiment-{stopped["id"]}"' not in page.text
    assert "sample ratio mismatch" in page.text
    lift, low, high = (treatment["conversion"][k] * 100 for k in ("lift", "ci_low", "ci_high"))
    assert lift == pytest.approx(100.0)  # 0.4 / 0.2 - 1
    assert f"{lift:+.1f} % ({low:+.1f}, {high:+.1f})" in page.text
