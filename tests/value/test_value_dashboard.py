"""The dashboard's customer-value card: deciles by hand, then rendered from a real rebuild's Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.dashboard.value import revenue_deciles
from app.main import create_app
from tests.conftest import ADMIN_KEY, isolated_settings
from tests.serving.conftest import LoadedShop, load_shop


def test_deciles_by_hand() -> None:
    out = revenue_deciles(np.arange(1.0, 21.0))  # 20 customers spending 1..20
    assert out["customers"] == 20 and out["total"] == 210.0
    assert [d["customers"] for d in out["deciles"]] == [2] * 10
    assert out["deciles"][0]["revenue"] == 39.0 and out["deciles"][-1]["revenue"] == 3.0
    assert out["top_decile_share"] == round(39 / 210, 4) and out["deciles"][0]["mean"] == 19.5
    assert sum(d["revenue"] for d in out["deciles"]) == 210.0


def test_deciles_of_few_or_no_customers() -> None:
    few = revenue_deciles(np.array([5.0, 30.0, 15.0]))
    assert few["deciles"][0] == {"decile": 1, "customers": 1, "revenue": 30.0, "mean": 30.0, "share": 0.6}
    assert sum(d["customers"] for d in few["deciles"]) == 3
    none = revenue_deciles(np.zeros(0))
    assert none["customers"] == 0 and none["top_decile_share"] is None
    assert all(d["customers"] == 0 and d["mean"] is None for d in none["deciles"])


@pytest.fixture(scope="module")
def shop(database_url: str, redis_url: str) -> Iterator[LoadedShop]:
    with isolated_settings(database_url, redis_url) as settings, TestClient(
        create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as client:
        yield load_shop(client, settings)


def _page_data(client: TestClient) -> tuple[str, dict[str, object]]:
    html = client.get("/dashboard", params={"key": ADMIN_KEY}).text  # logs in, follows to the page
    raw = html.split('<script id="dashboard-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    return html, json.loads(raw)


def test_the_card_shows_the_served_values_deciles(shop: LoadedShop) -> None:
    buyers = list(dict.fromkeys(e["user_id"] for e in shop.shop.events if e["type"] == "purchase"))
    values = shop.client.post("/v1/value", json={"user_ids": buyers}).json()["values"]
    revenue = np.array([v["expected_revenue"] for v in values if v["scored"]])
    html, data = _page_data(shop.client)
    card = data["value"]
    assert isinstance(card, dict) and card["customers"] == len(revenue) > 10 and card["horizon_days"] == 90
    top = np.sort(revenue)[::-1][: -(-len(revenue) // 10)]
    assert card["top_decile_share"] == pytest.approx(top.sum() / revenue.sum(), abs=1e-3)
    assert [d["customers"] for d in card["deciles"]] == [d["customers"] for d in revenue_deciles(revenue)["deciles"]]
    assert card["deciles"][0]["mean"] >= card["deciles"][-1]["mean"]
    run_value = shop.run.metrics["value"]
    validated = data["model"]["value"]  # type: ignore[index]
    assert validated["kind"] == run_value["kind"]
    assert validated["top10_share"] == pytest.approx(run_value[run_value["kind"]]["top10_share"], abs=1e-4)
    section = html.split('id="value"', 1)[1].split("</section>", 1)[0]
    assert f"Top decile: {card['top_decile_share'] * 100:.1f} %" in section
    assert section.count("<tr>") == 11  # the header and ten deciles
