"""The results statistics against hand-computed cases, scipy.stats and a seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from app.experiments import stats


def test_welch_matches_a_hand_computed_case_and_scipy() -> None:
    control, treatment = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    cmp = stats.welch_samples(control, treatment)
    # means 2.5 and 5, variances 5/3 and 20/3: se = sqrt(5/12 + 20/12) = sqrt(25/12)
    se = math.sqrt(25 / 12)
    df = (25 / 12) ** 2 / ((5 / 12) ** 2 / 3 + (20 / 12) ** 2 / 3)  # 4.4118
    assert cmp.diff == pytest.approx(2.5)
    assert df == pytest.approx(4.4117647, rel=1e-6)
    half = sps.t.ppf(0.975, df) * se
    assert (cmp.ci_low, cmp.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    assert cmp.p_value == pytest.approx(sps.ttest_ind(treatment, control, equal_var=False).pvalue)
    rng = np.random.default_rng(7)
    a, b = rng.exponential(10.0, 500), rng.exponential(11.0, 700)
    assert stats.welch_samples(a, b).p_value == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue)
    lift, low, high = cmp.relative(2.5)
    assert (lift, low, high) == pytest.approx((1.0, (2.5 - half) / 2.5, (2.5 + half) / 2.5))


def test_ratio_delta_method_hand_case() -> None:
    clicks, exposures = [1.0, 0.0, 2.0], [2.0, 1.0, 3.0]
    r = stats.ratio(clicks, exposures)
    # R = 3/6; s_xx = 1, s_yy = 1, s_xy = 1 -> (1 - 2*0.5*1 + 0.25*1) / (3 * 4) = 0.25 / 12
    assert r.value == pytest.approx(0.5)
    assert r.variance == pytest.approx(0.25 / 12)
    cmp = stats.ratio_diff(r, stats.Ratio(0.7, 0.25 / 12))
    se = math.sqrt(0.5 / 12)
    assert cmp.diff == pytest.approx(0.2)
    assert cmp.p_value == pytest.approx(2 * sps.norm.sf(0.2 / se))


def test_srm_matches_scipy_chisquare_and_flags_a_skew() -> None:
    assert stats.srm_p_value([500, 500], [1, 1]) == pytest.approx(1.0)
    assert stats.srm_p_value([300, 700], [3, 7]) == pytest.approx(1.0)
    p = stats.srm_p_value([560, 440], [1, 1])
    assert p == pytest.approx(sps.chisquare([560, 440], [500, 500]).pvalue)
    assert p < 0.001  # chi2 = 14.4
    # an arm whose weight rounds to no shopper at all: no NaN, a sure mismatch if anyone landed there
    assert stats.srm_p_value([2, 0], [775121.05, 5e-324]) == pytest.approx(1.0)
    assert stats.srm_p_value([2, 1], [1.0, 0.0]) == 0.0


def test_required_sample_for_the_default_mde() -> None:
    # p = 0.1: var 0.09, delta 0.01 -> 2 * (1.95996 + 0.84162)^2 * 0.09 / 1e-4 = 14128
    assert stats.required_per_arm(0.1, 0.09) == pytest.approx(14128, rel=1e-3)
    assert stats.required_per_arm(0.0, 0.0) == math.inf


SIMULATIONS, USERS = 400, 2000


def _simulate(lift: float, seed: int) -> tuple[stats.Comparison, float]:
    """SIMULATIONS experiments of USERS per arm, conversion 10 % in control and 10 % x (1 + lift)."""
    rng = np.random.default_rng(seed)
    p_c, p_t = 0.10, 0.10 * (1 + lift)
    conv_c = rng.binomial(USERS, p_c, SIMULATIONS) / USERS
    conv_t = rng.binomial(USERS, p_t, SIMULATIONS) / USERS
    var = lambda m: m * (1 - m) * USERS / (USERS - 1)  # noqa: E731  (the ddof=1 variance of 0/1 data)
    return stats.welch(USERS, conv_c, var(conv_c), USERS, conv_t, var(conv_t)), p_t - p_c


@pytest.mark.parametrize("lift", [0.0, 0.2])
def test_simulated_ci_covers_the_true_lift_near_95_percent(lift: float) -> None:
    cmp, truth = _simulate(lift, seed=14)
    coverage = np.mean((cmp.ci_low <= truth) & (truth <= cmp.ci_high))
    assert 0.92 <= coverage <= 0.98


def test_no_false_winner_at_zero_lift_and_power_at_a_real_lift() -> None:
    null, _ = _simulate(0.0, seed=15)
    assert np.mean(null.p_value < 0.05) <= 0.08  # the nominal 5 %, plus simulation noise
    # a 30 % lift needs ~1,570 users an arm for 80 % power (required_per_arm); USERS is above that
    assert stats.required_per_arm(0.1, 0.09, 0.3) < USERS
    real, _ = _simulate(0.3, seed=16)
    assert np.mean((real.p_value < 0.05) & (real.diff > 0)) > 0.8
    assert np.mean((real.p_value < 0.05) & (real.diff < 0)) == 0.0


def test_ratio_coverage_with_clustered_users() -> None:
    rng = np.random.default_rng(21)
    exposures = rng.integers(1, 6, size=(SIMULATIONS, 1000)).astype(np.float64)
    clicks = rng.binomial(exposures.astype(np.int64), 0.2).astype(np.float64)
    exposures_t = rng.integers(1, 6, size=(SIMULATIONS, 1000)).astype(np.float64)
    clicks_t = rng.binomial(exposures_t.astype(np.int64), 0.2).astype(np.float64)
    cmp = stats.ratio_diff(stats.ratio(clicks, exposures), stats.ratio(clicks_t, exposures_t))
    coverage = np.mean((cmp.ci_low <= 0.0) & (cmp.ci_high >= 0.0))
    assert 0.92 <= coverage <= 0.98
