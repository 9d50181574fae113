"""Model fitting, calibration, the training windows, scoring, tiers and explanations."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from app.eventlog import EventLog
from app.propensity import (
    DAY,
    TIERS,
    FeatureSpec,
    PropensityConfig,
    Target,
    build_features,
    describe_value,
    evaluate,
    fit_model,
    percentiles,
    score_users,
    tier_thresholds,
    tiers,
    top_factors,
    train_propensity,
)

NOW = 1_750_000_000.0
FAST = PropensityConfig(max_iter=60)


def names() -> tuple[list[str], list[str]]:
    log = EventLog.from_records(users=["a"], items=["x"], types=["view"], ts=[NOW - DAY])
    fm = build_features(log, NOW)
    return fm.names, fm.descriptions


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Rows with real feature names: purchase odds rise with abandoned carts, fall with recency."""
    cols, _ = names()
    rng = np.random.default_rng(seed)
    X = np.zeros((n, len(cols)), dtype=np.float32)
    carts = rng.poisson(0.6, n).astype(np.float32)
    recency = rng.uniform(1, 365, n).astype(np.float32)
    X[:, cols.index("abandoned_carts_7d")] = carts
    X[:, cols.index("days_since_last_purchase")] = recency
    X[:, cols.index("events_30d")] = rng.poisson(5, n)
    logit = -1.6 + 0.9 * carts - 0.008 * recency
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return X, y


def fit(X: np.ndarray, y: np.ndarray, config: PropensityConfig = FAST):  # type: ignore[no-untyped-def,type-arg]
    cols, desc = names()
    return fit_model(X, y, target=Target("purchase"), spec=FeatureSpec(), names=cols, descriptions=desc, config=config)


def test_logistic_fallback_on_tiny_data_matches_the_base_rate() -> None:
    X, y = synthetic(150, seed=1)
    model = fit(X, y)
    assert model.kind == "logistic"
    p = model.predict_proba(X)
    assert ((p > 0) & (p < 1)).all()
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)  # max-likelihood intercept: calibrated in-sample


def test_logistic_fallback_when_positives_are_few_even_with_many_users() -> None:
    X, _ = synthetic(1000, seed=2)
    y = np.zeros(1000, dtype=bool)
    y[:15] = True
    assert fit(X, y).kind == "logistic"


def test_constant_model_when_only_one_class() -> None:
    X, _ = synthetic(300, seed=3)
    model = fit(X, np.zeros(300, dtype=bool))
    assert model.kind == "constant" and model.base_rate == 0.0
    assert (model.predict_proba(X) == 0).all()
    assert top_factors(model, X, [0, 1]) == [[], []]


@pytest.mark.parametrize(("method", "isotonic_min_class"), [("isotonic", 0), ("sigmoid", 10**9)])
def test_gradient_boosting_is_calibrated_to_the_true_base_rate_despite_class_weights(
    method: str, isotonic_min_class: int
) -> None:
    X, y = synthetic(6000, seed=4)
    model = fit(X, y, PropensityConfig(isotonic_min_class=isotonic_min_class))
    assert model.kind == "gbm" and model.calibration == method
    X_new, y_new = synthetic(6000, seed=5)
    m = evaluate(y_new, model.predict_proba(X_new), model.threshold)
    assert m["mean_predicted"] == pytest.approx(m["base_rate"], abs=0.015)
    assert m["brier"] < m["brier_base_rate"] and m["auc"] > 0.7
    assert max(abs(b["mean_predicted"] - b["observed_rate"]) for b in m["calibration"]) < 0.06


def test_evaluate_by_hand() -> None:
    m = evaluate(np.array([True, False, True, False]), np.array([0.9, 0.1, 0.6, 0.4]), threshold=0.5)
    assert m["auc"] == 1.0 and m["average_precision"] == 1.0
    assert m["brier"] == pytest.approx((0.01 + 0.01 + 0.16 + 0.16) / 4)
    assert m["base_rate"] == 0.5 and m["brier_base_rate"] == 0.25
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert [b["n"] for b in m["calibration"]] == [1, 1, 1, 1]
    json.dumps(m)


def test_tiers_relative_to_the_base_rate_and_percentiles() -> None:
    p = np.array([0.01, 0.05, 0.1, 0.19, 0.2])
    assert [TIERS[t] for t in tiers(p, 0.1)] == ["low", "medium", "medium", "medium", "high"]
    assert tier_thresholds(0.6) == (0.3, 0.8)  # doubling is out of reach: halfway to certainty
    np.testing.assert_allclose(percentiles(np.array([0.1, 0.3, 0.3, 0.9])), [0.25, 0.75, 0.75, 1.0])


def test_factors_name_the_reasons_in_marketer_words() -> None:
    X, y = synthetic(4000, seed=6)
    model = fit(X, y)
    cols = model.feature_names
    user = np.zeros((1, len(cols)), dtype=np.float32)
    user[0, cols.index("abandoned_carts_7d")] = 3
    user[0, cols.index("days_since_last_purchase")] = 300
    user[0, cols.index("events_30d")] = model.reference[cols.index("events_30d")]
    factors = top_factors(model, user, [0], k=3)[0]
    by_feature = {f.feature: f for f in factors}
    carts = by_feature["abandoned_carts_7d"]
    assert carts.text == "3 cart additions in the last 7 days without purchase" and carts.direction == "up"
    recency = by_feature["days_since_last_purchase"]
    assert recency.text == "last purchase 300 days ago" and recency.direction == "down"
    assert "events_30d" not in by_feature  # equal to the median: no reason
    assert abs(factors[0].impact) >= abs(factors[-1].impact)
    replaced = user.copy()
    replaced[0, cols.index("abandoned_carts_7d")] = model.reference[cols.index("abandoned_carts_7d")]
    expected = model.predict_proba(user)[0] - model.predict_proba(replaced)[0]
    assert carts.impact == pytest.approx(expected, abs=1e-4)


def test_one_user_explanation_takes_milliseconds() -> None:
    X, y = synthetic(4000, seed=7)
    model = fit(X, y, PropensityConfig())
    top_factors(model, X, [0])
    start = time.perf_counter()
    for row in range(20):
        top_factors(model, X, [row])
    assert (time.perf_counter() - start) / 20 < 0.05


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("events_30d", 0, "no activity in the last 30 days"),
        ("events_7d", 1, "1 interaction in the last 7 days"),
        ("days_since_last_purchase", 45, "last purchase 45 days ago"),
        ("days_since_last_purchase", 365, "no purchase in the last 365 days"),
        ("days_since_last_event", 0.2, "last activity less than a day ago"),
        ("add_to_cart_7d", 1, "1 cart addition in the last 7 days"),
        ("view_30d", 12, "12 product views in the last 30 days"),
        ("purchases_total", 0, "never purchased"),
        ("revenue_90d", 120.5, "spent 120.50 in the last 90 days"),
        ("activity_trend", -0.7, "less active in the last 30 days than in the 30 before"),
        ("days_between_purchases", 14, "buys every 14 days on average"),
        ("attr:country=DE", 1, "country is DE"),
        ("attr:country=DE", 0, "country is not DE"),
        ("attr:age", 34, "age is 34"),
    ],
)
def test_describe_value(name: str, value: float, text: str) -> None:
    assert describe_value(name, value, cap=365) == text


def _shop() -> tuple[EventLog, list[list[str]], list[dict[str, object]]]:
    from app.demo.generator import generate_shop, to_event_log

    shop = generate_shop(n_users=900, n_items=120, days=120, seed=3, now=NOW)
    return to_event_log(shop), [it["categories"] for it in shop.items], [u["attributes"] for u in shop.users]


def test_train_and_score_end_to_end_on_a_generated_shop() -> None:
    log, cats, attrs = _shop()
    result = train_propensity(log, NOW, "purchase", config=FAST, item_categories=cats, user_attributes=attrs)
    m = result.metrics
    json.dumps(m)
    assert m["status"] == "ok" and m["auc"] > 0.6 and m["brier"] < m["brier_base_rate"]
    h = 30 * DAY
    assert m["train_cutoffs"] == [NOW - 2 * h, NOW - 3 * h] and m["eval_cutoff"] == NOW - h
    assert m["model"]["cutoffs"] == [NOW - h, NOW - 2 * h]
    assert len(m["calibration"]) == 10
    scores = score_users(result.model, log, NOW, item_categories=cats, user_attributes=attrs)
    n = log.n_users
    assert scores.probability.shape == scores.percentile.shape == scores.tier.shape == (n,)
    assert scores.factor_feature.shape == (n, 3) and scores.percentile.max() == 1.0
    np.testing.assert_array_equal(scores.tier, tiers(scores.probability, result.model.base_rate))
    top = int(np.argmax(scores.probability))
    factors = scores.factors(result.model, top)
    assert factors and all(f.text and f.direction in {"up", "down"} for f in factors)
    partial = score_users(result.model, log, NOW, item_categories=cats, user_attributes=attrs, factor_rows=[top])
    np.testing.assert_array_equal(partial.factor_feature[top], scores.factor_feature[top])
    assert (np.delete(partial.factor_feature, top, axis=0) == -1).all()
    np.testing.assert_array_equal(partial.probability, scores.probability)


def test_category_target_trains_with_category_columns() -> None:
    log, cats, _ = _shop()
    category = cats[0][0]
    result = train_propensity(log, NOW, f"purchase:{category}", config=FAST, item_categories=cats)
    assert "cat_purchases_total" in result.model.feature_names
    assert result.metrics["target"] == f"purchase:{category}"


def test_history_requirements() -> None:
    recent = EventLog.from_records(users=["a", "b"], items=["x", "x"], types=["view", "purchase"],
                                   ts=[NOW - 10 * DAY, NOW - 5 * DAY])  # fmt: skip
    with pytest.raises(ValueError, match="not enough history"):
        train_propensity(recent, NOW, "purchase")
    one_window = EventLog.from_records(users=["a", "b"], items=["x", "x"], types=["view", "purchase"],
                                       ts=[NOW - 40 * DAY, NOW - 5 * DAY])  # fmt: skip
    result = train_propensity(one_window, NOW, "purchase")
    assert result.metrics["status"] == "insufficient_history"
    assert result.model.kind == "constant" and result.model.base_rate == 0.0
