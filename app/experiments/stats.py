"""The statistics of an experiment's results: numpy/scipy only, no I/O.

Every function takes per-arm summaries (counts, means, variances) as scalars or arrays of the same
shape, so the seeded simulation in the tests runs hundreds of experiments in one call.

- Means (conversion per exposed user, revenue per exposed user): Welch's t-test and its CI for the
  difference, the same p-value as `scipy.stats.ttest_ind(a, b, equal_var=False)`.
- Ratios of per-user sums (CTR = clicks / exposures, users clustered): the delta method, a z-test.
- Sample-ratio mismatch: Pearson's chi-square of the users per arm against the configured weights.
- The sample a minimum detectable effect needs: two-sided, alpha 0.05, power 0.8, for a relative
  lift of `MDE` (10 % unless the caller says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

ALPHA = 0.05
POWER = 0.8
MDE = 0.10
"""Default minimum detectable effect: a 10 % relative lift over control."""

Float = NDArray[np.float64] | float


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: `diff` = mean_t - mean_c with its 95 % CI; `lift` and its CI are the
    same divided by the control mean (None-like NaN when control is 0)."""

    diff: Any
    ci_low: Any
    ci_high: Any
    p_value: Any

    def relative(self, control_mean: Any) -> tuple[Any, Any, Any]:
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.asarray(control_mean, dtype=np.float64)
            return self.diff / c, self.ci_low / c, self.ci_high / c


def welch(n_c: ArrayLike, mean_c: ArrayLike, var_c: ArrayLike,
          n_t: ArrayLike, mean_t: ArrayLike, var_t: ArrayLike) -> Comparison:
    """Welch's unequal-variance test of mean_t - mean_c from sample sizes, means and (ddof=1) variances."""
    nc, mc, vc, nt, mt, vt = (np.asarray(x, dtype=np.float64) for x in (n_c, mean_c, var_c, n_t, mean_t, var_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        se2_c, se2_t = vc / nc, vt / nt
        se = np.sqrt(se2_c + se2_t)
        df = (se2_c + se2_t) ** 2 / (se2_c**2 / (nc - 1) + se2_t**2 / (nt - 1))
        diff = mt - mc
        t = diff / se
        p = 2.0 * stats.t.sf(np.abs(t), df)
        half = stats.t.ppf(1.0 - ALPHA / 2.0, df) * se
    return Comparison(diff, diff - half, diff + half, p)


def welch_samples(control: ArrayLike, treatment: ArrayLike) -> Comparison:
    c, t = np.asarray(control, dtype=np.float64), np.asarray(treatment, dtype=np.float64)
    return welch(len(c), c.mean(), c.var(ddof=1), len(t), t.mean(), t.var(ddof=1))


@dataclass(frozen=True)
class Ratio:
    """sum(x) / sum(y) over users, and the delta-method variance of that ratio."""

    value: Any
    variance: Any


def ratio(x: ArrayLike, y: ArrayLike) -> Ratio:
    """The ratio of per-user totals (clicks `x` over exposures `y`) with its delta-method variance:
    Var(R) ~ (s_xx - 2 R s_xy + R^2 s_yy) / (n * mean(y)^2), users being the independent units."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = xa.shape[-1]
    mx, my = xa.mean(axis=-1, keepdims=True), ya.mean(axis=-1, keepdims=True)
    dx, dy = xa - mx, ya - my
    sxx, syy, sxy = ((a * b).sum(axis=-1) / (n - 1) for a, b in ((dx, dx), (dy, dy), (dx, dy)))
    mx, my = mx[..., 0], my[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = mx / my
        var = (sxx - 2.0 * r * sxy + r * r * syy) / (n * my * my)
    return Ratio(r, var)


def ratio_diff(control: Ratio, treatment: Ratio) -> Comparison:
    """z-test of R_t - R_c for independent arms."""
    diff = np.asarray(treatment.value, dtype=np.float64) - np.asarray(control.value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.asarray(control.variance) + np.asarray(treatment.variance))
        z = diff / se
        p = 2.0 * stats.norm.sf(np.abs(z))
    half = stats.norm.ppf(1.0 - ALPHA / 2.0) * se
    return Comparison(diff, diff - half, diff + half, p)


def srm_p_value(counts: ArrayLike, weights: ArrayLike) -> float:
    """Pearson chi-square p-value of the users per arm against the split the weights promise."""
    obs = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if obs.sum() == 0:
        return 1.0
    expected = obs.sum() * w / w.sum()
    if (obs[expected <= 0] > 0).any():  # shoppers in an arm promised none: a mismatch for certain
        return 0.0
    used = expected > 0
    if used.sum() < 2:
        return 1.0
    return float(stats.chisquare(obs[used], expected[used]).pvalue)


def required_per_arm(mean_c: float, var_c: float, mde: float = MDE) -> float:
    """Users each arm needs to detect a relative lift of `mde` over a control mean `mean_c` with
    variance `var_c` (two-sided ALPHA, POWER). Infinite when control has no signal yet."""
    delta = mde * mean_c
    if delta <= 0 or var_c <= 0:
        return float("inf")
    z = stats.norm.ppf(1.0 - ALPHA / 2.0) + stats.norm.ppf(POWER)
    return float(2.0 * z * z * var_c / (delta * delta))
