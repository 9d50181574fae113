"""Purchase-cycle features (``features_cycle``) on tiny logs worked out by hand, plus no peeking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.eventlog import EventLog
from app.propensity import DAY, FeatureSpec, PropensityConfig, build_features, train_propensity
from app.propensity.features import FeatureMatrix, without_cycle
from app.propensity.features_cycle import CYCLE_COLUMNS, NO_GAPS

T = 1_700_000_000.0
CYCLE = FeatureSpec(purchase_cycle=True, horizon_days=30.0)


def _log(rows: list[tuple[str, str, float, float | None]]) -> EventLog:
    """rows: (user, type, days before T, price)."""
    return EventLog.from_records(
        users=[u for u, _, _, _ in rows],
        items=["x"] * len(rows),
        types=[t for _, t, _, _ in rows],
        ts=[T - d * DAY for _, _, d, _ in rows],
        values=[None] * len(rows),
        prices=[p for _, _, _, p in rows],
        item_universe=["x"],
    )


def _features(log: EventLog, spec: FeatureSpec = CYCLE) -> dict[str, dict[str, float]]:
    fm = build_features(log, T, spec)
    return {str(u): dict(zip(fm.names, fm.X[k].tolist(), strict=True)) for k, u in enumerate(log.user_ids)}


@pytest.fixture
def buyers() -> EventLog:
    regular = [("regular", "purchase", d, 10.0) for d in (14, 21, 28, 35, 42)]  # every 7 days
    uneven = [("uneven", "purchase", d, 5.0) for d in (1, 3, 13)]  # gaps 2 and 10
    once = [("once", "purchase", 13.0, 8.0)]
    browser = [("browser", "view", 2.0, None)]
    return _log(regular + uneven + once + browser)


def test_gap_mean_and_cv_by_hand(buyers: EventLog) -> None:
    f = _features(buyers)
    assert f["regular"]["purchase_gap_mean"] == 7.0
    assert f["regular"]["purchase_gap_cv"] == 0.0  # a perfectly regular buyer
    assert f["uneven"]["purchase_gap_mean"] == 6.0
    assert f["uneven"]["purchase_gap_cv"] == pytest.approx(4.0 / 6.0)
    for user in ("once", "browser"):
        assert f[user]["purchase_gap_mean"] == 0.0 and f[user]["purchase_gap_cv"] == NO_GAPS


def test_overdue_against_own_gap_then_the_shops(buyers: EventLog) -> None:
    f = _features(buyers)
    assert f["regular"]["purchase_overdue"] == pytest.approx(14.0 / 7.0)  # two cycles without buying
    assert f["uneven"]["purchase_overdue"] == pytest.approx(1.0 / 6.0)
    shop_gap = (7.0 + 6.0) / 2  # the median of the repeat buyers' mean gaps
    assert f["once"]["purchase_overdue"] == pytest.approx(13.0 / shop_gap)
    assert f["browser"]["purchase_overdue"] == pytest.approx(365.0 / shop_gap)  # never bought: the cap


def test_spend_trend_is_a_log_ratio() -> None:
    log = _log([("up", "purchase", 10, 30.0), ("up", "purchase", 120, 2.0), ("down", "purchase", 100, 50.0),
                ("flat", "purchase", 5, 7.0), ("flat", "purchase", 95, 7.0)])  # fmt: skip
    f = _features(log)
    assert f["up"]["spend_trend"] == pytest.approx(math.log1p(30.0) - math.log1p(2.0), rel=1e-6)
    assert f["down"]["spend_trend"] == pytest.approx(-math.log1p(50.0), rel=1e-6)
    assert f["flat"]["spend_trend"] == 0.0


def test_season_learned_from_last_year() -> None:
    # the shop's purchase days over the past year: 4 in the target window's dates a year ago
    # (335-365 days back), 2 more elsewhere -> 6 a year, 4 per 30 days then
    rows = [("fan", "purchase", d, 1.0) for d in (340, 350, 360)] + [("other", "purchase", 336, 1.0)]
    rows += [("other", "purchase", d, 1.0) for d in (100, 200)]
    f = _features(_log([*rows, ("old", "view", 400, None)]))
    assert f["fan"]["season_own_purchases"] == 3 and f["other"]["season_own_purchases"] == 1
    assert f["old"]["season_own_purchases"] == 0
    assert f["fan"]["season_shop_index"] == pytest.approx((4 / 30) / (6 / 365), rel=1e-5)


def test_season_degrades_to_neutral_under_a_year() -> None:
    f = _features(_log([("a", "purchase", d, 1.0) for d in (10, 100, 300)]))
    assert f["a"]["season_shop_index"] == 1.0 and f["a"]["season_own_purchases"] == 0.0
    assert f["a"]["season_days_to_peak"] == -1.0


def test_season_peak_is_the_busiest_week_a_year_ago() -> None:
    # five shoppers bought 200 days ago (a sale), single purchases elsewhere: the sale's date comes
    # round again 165 days after the cut-off
    rows = [(f"s{k}", "purchase", 199.5, 1.0) for k in range(5)]
    rows += [("other", "purchase", d, 1.0) for d in (20, 90, 150, 260, 330)]
    f = _features(_log([*rows, ("old", "view", 400, None)]))
    assert f["old"]["season_days_to_peak"] == 165.0 and f["s0"]["season_days_to_peak"] == 165.0


def test_season_peak_wraps_round_the_year() -> None:
    # a peak at the cut-off's own dates a year ago (buckets 363, 364 and 0, 1) sums across the join:
    # centred on 364 it weighs 3 + 4*2 + 3 + 2 = 16, on 0 only 2 + 3*2 + 4 + 3 = 15
    rows = [(f"a{k}", "purchase", d, 1.0) for k, d in enumerate((364.5, 364.5, 363.5, 0.5, 1.5))]
    rows += [("b", "purchase", d, 1.0) for d in (100.5, 200.5)]
    f = _features(_log([*rows, ("old", "view", 400, None)]))
    assert f["b"]["season_days_to_peak"] == 0.0  # the two buys at 364 days back, with their neighbours


def _btyd_rows(seed: int = 3) -> list[tuple[str, str, float, float | None]]:
    """200 shoppers buying at Poisson-ish rates over 300 days, some of whom stopped long ago."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, float, float | None]] = []
    for k in range(200):
        start, rate = rng.uniform(60, 300), rng.uniform(0.02, 0.2)
        stop = start if k % 3 == 0 else rng.uniform(0, start)  # a third dies soon after its first order
        days = start - np.cumsum(rng.exponential(1 / rate, 40))
        days = np.r_[start, days[days > max(stop, 0.5)]]
        rows += [(f"u{k}", "purchase", float(d), 10.0) for d in days]
    rows.append(("browser", "view", 1.0, None))
    return rows


def test_btyd_p_alive_and_expected_purchases() -> None:
    f = _features(_log(_btyd_rows()))
    alive = np.array([v["btyd_p_alive"] for u, v in f.items() if u != "browser"])
    expected = np.array([v["btyd_expected_purchases"] for u, v in f.items() if u != "browser"])
    assert np.all((alive > 0) & (alive <= 1)) and np.all(expected >= 0)
    assert f["browser"]["btyd_p_alive"] == 0.0 and f["browser"]["btyd_expected_purchases"] == 0.0
    recent = np.array([v["days_since_last_purchase"] for u, v in f.items() if u != "browser"])
    repeat = np.array([v["purchases_total"] for u, v in f.items() if u != "browser"]) > 1
    # among repeat buyers, the long-silent are judged less alive than the recently active
    assert alive[repeat & (recent > 100)].mean() < alive[repeat & (recent < 10)].mean()


def test_no_peeking_past_the_cutoff() -> None:
    rows = _btyd_rows()
    future: list[tuple[str, str, float, float | None]] = [("u1", "purchase", -d, 99.0) for d in (0, 5, 20)]
    before, after = _features(_log(rows)), _features(_log(rows + future + [("u2", "purchase", -3, 1.0)]))
    for user, row in before.items():
        assert after[user] == row


def test_off_by_default_and_named_when_on(buyers: EventLog) -> None:
    plain, cycle = build_features(buyers, T), build_features(buyers, T, CYCLE)
    added = [n for n in cycle.names if n not in plain.names]
    assert added == ["purchase_gap_mean", "purchase_gap_cv", "purchase_overdue", "spend_trend", "season_shop_index",
                     "season_own_purchases", "season_days_to_peak", "btyd_p_alive", "btyd_expected_purchases"]  # fmt: skip
    assert set(added) == CYCLE_COLUMNS
    assert np.array_equal(cycle.X[:, [cycle.index(n) for n in plain.names]], plain.X)
    sliced = without_cycle(cycle, plain.spec)
    assert sliced.names == plain.names and sliced.descriptions == plain.descriptions
    assert np.array_equal(sliced.X, plain.X) and sliced.spec == plain.spec


@pytest.mark.parametrize(("target", "tolerance"), [("purchase", 0.002), ("churn", 0.002), ("purchase", -1.0),
                                                   ("purchase", 1.0)])  # fmt: skip
def test_validation_keeps_the_block_only_where_it_does_not_hurt(target: str, tolerance: float) -> None:
    from app.demo.generator import generate_shop, to_event_log

    shop = generate_shop(n_users=900, n_items=120, days=150, seed=5, now=T)
    log = to_event_log(shop)
    cache: dict[tuple[float, FeatureSpec], FeatureMatrix] = {}
    config = PropensityConfig(max_iter=40, cycle_tolerance=tolerance)  # -1: always dropped, 1: always kept
    result = train_propensity(log, T, target, config=config, feature_cache=cache)
    choice = result.metrics["purchase_cycle"]
    with_cycle, without = choice["validation_auc_with"], choice["validation_auc_without"]
    assert 0.5 < with_cycle < 1 and 0.5 < without < 1
    assert choice["kept"] == (with_cycle >= without - tolerance)
    if abs(tolerance) == 1.0:
        assert choice["kept"] == (tolerance > 0)
    assert (set(result.model.feature_names) >= CYCLE_COLUMNS) == choice["kept"]
    assert result.model.spec.purchase_cycle == choice["kept"]
    for (cutoff, spec), fm in cache.items():  # only the production cut-offs stay, sliced or built alike
        assert fm.names == build_features(log, cutoff, spec).names
        assert cutoff in (T - 30 * DAY, T - 60 * DAY)


@pytest.mark.parametrize("more_targets", [True, False])
def test_a_second_target_reads_the_matrices_the_first_built(more_targets: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Purchase and churn read the same cut-offs: told another target follows, the first keeps what it
    built from the events, and the second makes no pass the first made. The caller's matrix at now
    (scoring's) is never dropped."""
    from app.demo.generator import generate_shop, to_event_log
    from app.propensity import algo

    log = to_event_log(generate_shop(n_users=900, n_items=120, days=150, seed=5, now=T))
    passes: list[tuple[float, FeatureSpec]] = []

    def counted(log: EventLog, cutoff: float, spec: FeatureSpec, **kwargs: object) -> FeatureMatrix:
        passes.append((cutoff, spec))
        return build_features(log, cutoff, spec, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(algo, "build_features", counted)
    cache: dict[tuple[float, FeatureSpec], FeatureMatrix] = {}
    config = PropensityConfig(max_iter=40)
    first = train_propensity(log, T, "purchase", config=config, feature_cache=cache, more_targets=more_targets)
    now = (T, first.model.spec)
    cache[now] = scoring = build_features(log, T, first.model.spec)
    made_by_first = len(passes)
    second = train_propensity(log, T, "churn", config=config, feature_cache=cache)
    assert made_by_first >= 3 and second.model.kind == "gbm"
    assert (len(set(passes)) == len(passes)) == more_targets  # without the hint, churn rebuilds purchase's
    assert cache[now] is scoring
    production = {(T - k * 30 * DAY, second.model.spec) for k in (1, 2)}
    assert set(cache) - {now} == production  # after the last target, only what scoring reads again
