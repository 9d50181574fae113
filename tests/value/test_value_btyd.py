"""BG/NBD and Gamma-Gamma: our maximum-likelihood fits against `lifetimes` on its own CDNOW example data
(shipped inside the installed package, nothing downloaded), and recovery of known parameters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary, load_cdnow_summary_data_with_monetary_value

from app.value.algo_btyd import BGNBD, DEGENERATE, fit_bgnbd, fit_bgnbd_usable, fit_gamma_gamma


def _close(ours: float, theirs: float) -> bool:
    return abs(ours - theirs) <= 0.01 * abs(theirs)


def test_bgnbd_matches_lifetimes_on_cdnow() -> None:
    d = load_cdnow_summary(index_col=[0])
    x, t_x, T = (d[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    theirs = BetaGeoFitter().fit(d["frequency"], d["recency"], d["T"])
    ours = fit_bgnbd(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        assert _close(getattr(ours, name), float(theirs.params_[name])), (name, getattr(ours, name), theirs.params_)
    # and the published CDNOW estimates (Fader, Hardie & Lee 2005, table 1): r .243, α 4.414, a .793, b 2.426
    assert (round(ours.r, 3), round(ours.alpha, 3), round(ours.a, 3), round(ours.b, 3)) == (0.243, 4.414, 0.793, 2.426)
    want = theirs.conditional_expected_number_of_purchases_up_to_time(39, d["frequency"], d["recency"], d["T"])
    np.testing.assert_allclose(ours.expected_purchases(39.0, x, t_x, T), want.to_numpy(), rtol=1e-3, atol=1e-6)
    alive = theirs.conditional_probability_alive(d["frequency"], d["recency"], d["T"])
    np.testing.assert_allclose(ours.p_alive(x, t_x, T), np.asarray(alive), rtol=1e-3, atol=1e-6)


def test_gamma_gamma_matches_lifetimes_on_cdnow() -> None:
    s = load_cdnow_summary_data_with_monetary_value()
    repeat = s[s["frequency"] > 0]
    theirs = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    ours = fit_gamma_gamma(s["frequency"].to_numpy(np.float64), s["monetary_value"].to_numpy(np.float64))
    for name in ("p", "q", "v"):
        assert _close(getattr(ours, name), float(theirs.params_[name])), (name, getattr(ours, name), theirs.params_)
    want = theirs.conditional_expected_average_profit(repeat["frequency"], repeat["monetary_value"])
    got = ours.expected_spend(repeat["frequency"].to_numpy(np.float64), repeat["monetary_value"].to_numpy(np.float64))
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-3)


def _simulate_bgnbd(truth: BGNBD, n: int, T: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers of the BG/NBD story, observed for T from their first transaction."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(truth.r, 1.0 / truth.alpha, n)
    p = rng.beta(truth.a, truth.b, n)
    x, t_x, now = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        now[alive] += rng.exponential(1.0 / lam[alive])
        bought = alive & (now < T)
        x[bought] += 1
        t_x[bought] = now[bought]
        alive = bought & (rng.random(n) >= p)  # dies right after a transaction with probability p
    return x, t_x, np.full(n, T)


def test_bgnbd_recovers_known_parameters() -> None:
    truth = BGNBD(r=0.5, alpha=10.0, a=0.8, b=3.0)
    x, t_x, T = _simulate_bgnbd(truth, 30_000, 60.0, seed=1)
    fit = fit_bgnbd(x, t_x, T)
    # r/alpha (the mean purchase rate) and a/(a+b) (the mean death probability) are the identified quantities
    assert fit.r / fit.alpha == pytest.approx(truth.r / truth.alpha, rel=0.08)
    assert fit.a / (fit.a + fit.b) == pytest.approx(truth.a / (truth.a + truth.b), rel=0.15)


def test_predictions_are_probabilities_and_grow_with_the_horizon() -> None:
    model = BGNBD(r=0.24, alpha=4.4, a=0.79, b=2.4)
    x = np.array([0.0, 1.0, 5.0, 5.0, 20.0])
    t_x = np.array([0.0, 2.0, 30.0, 5.0, 38.0])
    T = np.full(5, 39.0)
    alive = model.p_alive(x, t_x, T)
    assert np.all((alive > 0) & (alive <= 1)) and alive[0] == 1.0
    assert alive[2] > alive[3]  # the same purchases, the last one long ago: less likely alive
    short, long = model.expected_purchases(10.0, x, t_x, T), model.expected_purchases(50.0, x, t_x, T)
    assert np.all(np.isfinite(long)) and np.all(long > short) and np.all(short > 0)


def test_gamma_gamma_refuses_data_without_repeat_spend() -> None:
    with pytest.raises(ValueError, match="two repeat customers"):
        fit_gamma_gamma(np.array([0.0, 0.0, 1.0]), np.array([5.0, 5.0, 0.0]))


def _small_odd_shop(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A handful of customers whose purchases follow no BTYD story: x, t_x, T at whole days, and spend m."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    T = np.round(rng.uniform(1, 120, n))
    x = rng.poisson(rng.uniform(0.2, 4), n).astype(np.float64)
    t_x = np.where(x > 0, np.round(T * rng.uniform(0, 1.0, n)), 0.0)
    return x, t_x, T, rng.lognormal(3, rng.uniform(0.01, 1), n)


def test_fits_on_small_odd_shops_leave_no_numpy_warnings_in_the_log() -> None:
    """The optimisers' trial points overflow on such data (about one fit in ten); the likelihoods answer
    those points with a huge value, so a warning would be noise in every rebuild's log."""
    usable = 0
    for seed in range(40):
        x, t_x, T, m = _small_odd_shop(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any RuntimeWarning fails the test
            try:
                bg = fit_bgnbd_usable(x, t_x, T, horizon_days=30.0)
                fit_gamma_gamma(x, m)
            except ValueError:  # too few repeat customers, or no finite likelihood: said, not warned
                continue
            predicted, alive = bg.expected_purchases(30.0, x, t_x, T), bg.p_alive(x, t_x, T)
        usable += 1
        assert np.all(np.isfinite(predicted)) and np.all((alive >= 0) & (alive <= 1))
    assert usable >= 30


def test_a_degenerate_fit_is_replaced_by_the_lightly_penalised_one() -> None:
    x, t_x, T, _ = _small_odd_shop(7)
    with np.errstate(all="ignore"):
        plain = fit_bgnbd(x, t_x, T)
        assert max(plain.a, plain.b) > DEGENERATE or not np.all(np.isfinite(plain.expected_purchases(30.0, x, t_x, T)))
    usable = fit_bgnbd_usable(x, t_x, T, horizon_days=30.0)
    assert usable == fit_bgnbd(x, t_x, T, penalizer=1e-3)
    assert max(usable.a, usable.b) <= DEGENERATE
    assert np.all(np.isfinite(usable.expected_purchases(30.0, x, t_x, T)))


def test_a_well_behaved_fit_is_kept_as_the_plain_mle() -> None:
    x, t_x, T = _simulate_bgnbd(BGNBD(r=0.5, alpha=10.0, a=0.8, b=3.0), 5_000, 60.0, seed=2)
    assert fit_bgnbd_usable(x, t_x, T, horizon_days=30.0) == fit_bgnbd(x, t_x, T)
