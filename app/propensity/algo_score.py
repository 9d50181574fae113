"""Score every user at "now": probability, percentile, tier and the top factors, as plain arrays.

Tiers are defined by probability relative to the base rate, because "twice as likely as the
average shopper" is what a marketer acts on, and because it stays honest when nobody is likely (a
percentile tier would still call the top 20 % "high"):

* ``high``:   probability ≥ 2 × base rate (or ≥ halfway from the base rate to certainty, when the
              base rate is above 1/3 and doubling it would be out of reach: ``min(2b, (1 + b) / 2)``);
* ``low``:    probability < base rate / 2;
* ``medium``: everything in between.

Percentile is ``rank / n`` with ties sharing their highest rank: the share of users scored at or
below this user (1.0 = the top).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from app.eventlog import EventLog
from app.propensity.algo_explain import Factor, factor_arrays, render_factors
from app.propensity.algo_model import PropensityModel
from app.propensity.features import FeatureMatrix, build_features

TIERS: tuple[str, ...] = ("low", "medium", "high")
"""Tier codes: index into this tuple."""


def tier_thresholds(base_rate: float) -> tuple[float, float]:
    """(low_below, high_from) probabilities for a base rate."""
    return base_rate / 2.0, min(2.0 * base_rate, (1.0 + base_rate) / 2.0)


def tiers(probability: NDArray[np.floating[Any]], base_rate: float) -> NDArray[np.int8]:
    """int8[n] codes into TIERS."""
    low_below, high_from = tier_thresholds(base_rate)
    out = np.ones(len(probability), dtype=np.int8)
    out[probability < low_below] = 0
    out[probability >= high_from] = 2
    return out


def percentiles(probability: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """float32[n] in (0, 1]: share of users with a probability at or below this one."""
    if len(probability) == 0:
        return np.zeros(0, dtype=np.float32)
    ranks: NDArray[np.float64] = rankdata(probability, method="max")
    return (ranks / len(probability)).astype(np.float32)


@dataclass
class PropensityScores:
    """Every user's score at ``cutoff``, row i = dense user index i (``user_ids[i]``).

    probability: float32[n]; percentile: float32[n]; tier: int8[n] into TIERS;
    factor_feature: int16[n, k] into ``feature_names`` (-1 = none); factor_impact: float32[n, k]
    (signed probability); factor_value: float32[n, k]. k = 0 when factors were not computed.
    """

    user_ids: NDArray[np.object_]
    probability: NDArray[np.float32]
    percentile: NDArray[np.float32]
    tier: NDArray[np.int8]
    factor_feature: NDArray[np.int16]
    factor_impact: NDArray[np.float32]
    factor_value: NDArray[np.float32]
    feature_names: list[str]
    base_rate: float
    cutoff: float
    target: str
    horizon_days: float

    def factors(self, model: PropensityModel, row: int) -> list[Factor]:
        """Rendered factors of one user (from the precomputed arrays; microseconds)."""
        sl = slice(row, row + 1)
        return render_factors(model, self.factor_feature[sl], self.factor_impact[sl], self.factor_value[sl])[0]

    def tier_names(self) -> list[str]:
        return [TIERS[t] for t in self.tier.tolist()]


def _scatter(a: NDArray[Any], rows: NDArray[np.intp], n: int, fill: float) -> NDArray[Any]:
    out = np.full((n, a.shape[1]), fill, dtype=a.dtype)
    out[rows] = a
    return out


def score_users(
    model: PropensityModel,
    log: EventLog,
    now: float,
    *,
    item_categories: Sequence[Sequence[str]] | None = None,
    user_attributes: Sequence[Mapping[str, Any] | None] | None = None,
    k: int = 3,
    factor_rows: NDArray[np.intp] | Sequence[int] | None = None,
    factor_limit: int | None = None,
    features: FeatureMatrix | None = None,
) -> PropensityScores:
    """Score all ``log.n_users`` users on features as of ``now`` (events with ts < now), with k factors each.

    Factors are the costly part (up to ``MAX_CANDIDATES`` extra predictions per user, ~0.4 ms per user
    on two busy cores): ``factor_rows`` limits them to those users (others get -1), ``factor_limit``
    to that many users with the highest probability (the head of the audience, the users a campaign
    acts on), ``k = 0`` skips them. ``features``: the matrix as of ``now``, when already built.
    """
    fm = features or build_features(
        log, now, model.spec, item_categories=item_categories, user_attributes=user_attributes
    )
    if fm.names != model.feature_names:
        raise ValueError("feature columns at scoring time differ from the model's; rebuild the model")
    p = model.predict_proba(fm.X)
    rows = None if factor_rows is None else np.asarray(factor_rows, dtype=np.intp)
    if factor_limit is not None and (len(p) if rows is None else len(rows)) > factor_limit:
        pool = np.arange(len(p)) if rows is None else rows
        rows = np.sort(pool[np.argsort(-p[pool], kind="stable")[:factor_limit]])
    feat, impact, value = factor_arrays(model, fm.X, rows, k)
    if rows is not None:
        feat, impact, value = (
            _scatter(feat, rows, log.n_users, -1),
            _scatter(impact, rows, log.n_users, 0),
            _scatter(value, rows, log.n_users, 0),
        )
    return PropensityScores(
        user_ids=log.user_ids,
        probability=p.astype(np.float32),
        percentile=percentiles(p),
        tier=tiers(p, model.base_rate),
        factor_feature=feat,
        factor_impact=impact,
        factor_value=value,
        feature_names=list(model.feature_names),
        base_rate=model.base_rate,
        cutoff=float(now),
        target=str(model.target),
        horizon_days=model.horizon_days,
    )
