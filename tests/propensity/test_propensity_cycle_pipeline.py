"""The purchase-cycle choice through a real rebuild (Postgres snapshot, Redis version) and the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.propensity import PropensityConfig
from app.propensity.algo_explain import describe_value
from app.propensity.features_cycle import CYCLE_COLUMNS
from tests.conftest import ADMIN_KEY, isolated_settings
from tests.serving.conftest import LoadedShop, load_shop


@pytest.fixture(scope="module")
def shop(database_url: str, redis_url: str) -> Iterator[LoadedShop]:
    with isolated_settings(database_url, redis_url) as settings, TestClient(
        create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as client:
        yield load_shop(client, settings, n_users=300)


def test_each_target_records_its_choice_and_serves_with_it(shop: LoadedShop) -> None:
    buyer = next(e["user_id"] for e in shop.shop.events if e["type"] == "purchase")
    for target in ("purchase", "churn"):
        m = shop.run.metrics["propensity"][target]
        choice = m["purchase_cycle"]
        with_cycle, without = choice["validation_auc_with"], choice["validation_auc_without"]
        tolerance = PropensityConfig().cycle_tolerance
        assert choice["kept"] == (with_cycle is None or without is None or with_cycle >= without - tolerance)
        body = shop.client.get(f"/v1/users/{buyer}/propensity", params={"target": target}).json()
        assert body["scored"] is True and 0 <= body["probability"] <= 1
        named = {f["feature"] for f in body["top_factors"]}
        assert choice["kept"] or not named & CYCLE_COLUMNS  # a dropped block never explains a score


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("purchase_gap_cv", -1.0, "too few purchases for a buying rhythm"),
        ("purchase_gap_cv", 0.0, "buys at a regular rhythm"),
        ("purchase_gap_mean", 7.0, "buys every 7 days on average"),
        ("purchase_overdue", 2.0, "last purchase 2.0 typical gaps ago"),
        ("spend_trend", -0.7, "spending less in the last 90 days than in the 90 before"),
        ("season_own_purchases", 0.0, "did not buy in these dates a year ago"),
        ("btyd_p_alive", 0.83, "83% likely still a customer"),
    ],
)
def test_cycle_factors_in_marketer_words(name: str, value: float, text: str) -> None:
    assert describe_value(name, value, cap=365) == text
