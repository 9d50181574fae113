"""Buy-till-you-die models by maximum likelihood: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma
(Fader, Hardie & Lee 2005, "RFM and CLV"). Pure numpy/scipy.

Inputs are per-customer summaries (the shapes are all ``[n_customers]``, times in any one unit, days
here):

    x    repeat transactions (transaction days after the first one)
    t_x  time of the last transaction, measured from the first
    T    time from the first transaction to the cut-off
    m    mean value of the repeat transactions (Gamma-Gamma only; customers with ``x > 0``)

Fits are on log parameters (positivity without bounds), on the unique rows with their counts as
weights: a million shoppers collapse to far fewer distinct (x, t_x, T) triples at day resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

Array = NDArray[np.float64]


@dataclass(frozen=True)
class BGNBD:
    """BG/NBD: transactions Poisson(λ) while alive, λ ~ Gamma(r, α); after each transaction the
    customer dies with probability p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: Array, t_x: Array, T: Array) -> Array:
        """P(still alive at the cut-off | x, t_x, T); 1 for customers without repeat transactions."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        log_ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        with np.errstate(over="ignore"):  # odds of death past 1e308 are p_alive 0, the right limit
            odds = np.where(x > 0, np.exp(np.log(a) - np.log(b + np.maximum(x, 1) - 1) + log_ratio), 0.0)
        return np.asarray(1.0 / (1.0 + odds), dtype=np.float64)

    def expected_purchases(self, t: float, x: Array, t_x: Array, T: Array) -> Array:
        """E[transactions in (T, T + t] | x, t_x, T] (eq. 10 of the paper)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        power = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
        head = (a + b + x - 1) / (a - 1)
        body = 1.0 - power * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return np.asarray(np.maximum(head * body * self.p_alive(x, t_x, T), 0.0), dtype=np.float64)


def bgnbd_log_likelihood(params: Array, x: Array, t_x: Array, T: Array) -> Array:
    """Per-customer log-likelihood; ``params`` = (r, alpha, a, b), all > 0."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):  # the x = 0 rows' branch is computed, then dropped
        a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=np.float64)


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma spend: a transaction's value ~ Gamma(p, ν), ν ~ Gamma(q, γ); mean spend of a
    customer p·γ/(q - 1) when q > 1. ``v`` is γ."""

    p: float
    q: float
    v: float

    def expected_spend(self, x: Array, m: Array) -> Array:
        """E[value of a future transaction | x repeat transactions of mean value m]; the population mean
        for x = 0 (m is ignored there)."""
        p, q, v = self.p, self.q, self.v
        m = np.where(x > 0, m, 0.0)
        return np.asarray(p * (v + x * m) / (p * x + q - 1), dtype=np.float64)


def gamma_gamma_log_likelihood(params: Array, x: Array, m: Array) -> Array:
    """Per-customer log-likelihood of mean spend m over x > 0 transactions; ``params`` = (p, q, v)."""
    p, q, v = params
    px = p * x
    return np.asarray(
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m)
        + px * np.log(x) - (px + q) * np.log(x * m + v),
        dtype=np.float64,
    )  # fmt: skip


def _unique_rows(*columns: Array) -> tuple[list[Array], Array]:
    """The distinct rows of the stacked columns and how often each occurs."""
    stacked = np.column_stack(columns)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, k] for k in range(rows.shape[1])], counts.astype(np.float64)


def _fit(nll: Callable[[Array], float], n_params: int, start: Array | None = None) -> Array:
    """Minimise a negative mean log-likelihood over log parameters: L-BFGS-B, then Nelder-Mead from
    its answer (the likelihood surfaces are flat along ridges; the polish takes the last per cent)."""
    x0 = np.zeros(n_params) if start is None else np.log(start)
    # trial points on small or odd data overflow (exp of a log parameter, a likelihood of -inf): `nll`
    # answers those with a huge value, so numpy's warnings would only be noise in the worker's log
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        first = minimize(nll, x0, method="L-BFGS-B")
        polished = minimize(
            nll, first.x, method="Nelder-Mead",
            options={"xatol": 1e-6, "fatol": 1e-10, "maxfev": 400 * n_params, "adaptive": True},
        )  # fmt: skip
    best = polished.x if polished.fun <= first.fun else first.x
    return np.asarray(np.exp(best), dtype=np.float64)


def fit_bgnbd(x: Array, t_x: Array, T: Array, penalizer: float = 0.0) -> BGNBD:
    """Maximum-likelihood BG/NBD. ``penalizer`` adds ``penalizer * sum(params**2)`` (lifetimes'
    convention) for small or degenerate data; 0 is the plain MLE.

    Raises ValueError without customers or with a non-finite likelihood at the answer.
    """
    if len(x) == 0:
        raise ValueError("BG/NBD needs at least one customer")
    (ux, ut, uT), w = _unique_rows(x, t_x, T)
    total = w.sum()

    def nll(log_params: Array) -> float:
        params = np.exp(log_params)
        ll = bgnbd_log_likelihood(params, ux, ut, uT)
        value = -float(w @ ll) / total + penalizer * float(params @ params)
        return value if np.isfinite(value) else 1e300

    params = _fit(nll, 4)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        diverged = nll(np.log(params)) >= 1e300
    if diverged:
        raise ValueError("BG/NBD fit did not converge to a finite likelihood")
    return BGNBD(*(float(v) for v in params))


#: Where the plain MLE has run off to a degenerate edge: a or b past this (no drop-out, or all of it).
DEGENERATE = 1e4
#: The light penalty that keeps such a fit finite (lifetimes' convention, `penalizer * sum(params**2)`).
LIGHT_PENALTY = 1e-3


def fit_bgnbd_usable(
    x: Array, t_x: Array, T: Array, horizon_days: float, probe: tuple[Array, Array, Array] | None = None
) -> BGNBD:
    """The plain MLE, or the lightly penalised one when the plain one is degenerate: a or b unbounded,
    or predictions over `horizon_days` that are not finite for the `probe` customers (x, t_x, T;
    default the fitted ones). Small or odd shops land there; a large one rarely does.

    Raises ValueError as `fit_bgnbd` does.
    """
    bg = fit_bgnbd(x, t_x, T)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a degenerate fit overflows here
        predicted = bg.expected_purchases(horizon_days, *(probe or (x, t_x, T)))
    if np.all(np.isfinite(predicted)) and max(bg.a, bg.b) <= DEGENERATE:
        return bg
    return fit_bgnbd(x, t_x, T, penalizer=LIGHT_PENALTY)


def fit_gamma_gamma(x: Array, m: Array, penalizer: float = 0.0) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on the customers with ``x > 0`` and ``m > 0`` (others ignored).

    Raises ValueError when fewer than two such customers exist.
    """
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    if int(keep.sum()) < 2:
        raise ValueError("Gamma-Gamma needs at least two repeat customers with a positive spend")
    (ux, um), w = _unique_rows(x[keep], m[keep])
    total = w.sum()
    # start at the moments' neighbourhood: q and p of a few, v scaled to the spend
    start = np.array([1.0, 2.0, float(np.median(um))])

    def nll(log_params: Array) -> float:
        params = np.exp(log_params)
        value = -float(w @ gamma_gamma_log_likelihood(params, ux, um)) / total + penalizer * float(params @ params)
        return value if np.isfinite(value) else 1e300

    return GammaGamma(*(float(v) for v in _fit(nll, 3, start)))
