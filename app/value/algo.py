"""Customer value over a horizon: BG/NBD + Gamma-Gamma, then a gradient-boosting correction, each
measured on the shop's own future; the one that validates better serves.

Windows (``h`` = horizon, ``now`` = the rebuild time; the outcome of cut-off T is ``[T, T + h)``):

* **BTYD** is fit on the history before its cut-off alone (it needs no labels): validated by fitting
  at ``now - h`` and comparing with ``[now - h, now)``, served by fitting at ``now``.
* **Correction**: ``HistGradientBoostingRegressor`` on the summary, the BTYD outputs and the
  propensity behaviour features: transactions with Poisson loss, revenue twice, to its mean (Poisson:
  never negative, robust to the few whales that dominate revenue) and to its median (absolute error).
  Trained on the stacked cut-offs ``T0, T0 - h/k, T0 - 2h/k, ...`` (k = ``n_train_windows``;
  overlapping outcome windows give short histories more rows) with ``T0 = now - 2h`` to validate (every
  outcome ends by ``now - h``) and ``T0 = now - h`` to serve, predicting at ``now - h`` and ``now``.
* **Choice**: among BTYD, the correction alone and the average of the two (``KINDS``), the lowest
  revenue MAE on the validation window ``[now - h, now)`` of those ranking customers nearly as well
  as the best (``choose``). Without two horizons of history the
  correction cannot be validated and BTYD serves.

p_alive is always BTYD's: there is no label for "alive" to correct it with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.common.threads import openmp_threads
from app.eventlog import EventLog
from app.propensity.features import FeatureSpec, build_features
from app.value.algo_btyd import BGNBD, GammaGamma, fit_bgnbd_usable, fit_gamma_gamma
from app.value.algo_metrics import value_metrics
from app.value.summary import DAY, Summary, outcome, summarise

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ValueConfig:
    """Defaults; the worker sets ``horizon_days`` from SHOPMIND_VALUE_HORIZON_DAYS.

    n_train_windows:     cut-offs stacked to train the correction, a horizon / n_train_windows apart
    min_train_customers: fewer customers in the training rows: no correction (BTYD serves)
    max_train_rows:      a seeded sample of the stacked rows above this (accuracy saturates first)
    """

    horizon_days: float = 90.0
    n_train_windows: int = 3
    min_train_customers: int = 200
    max_train_rows: int = 200_000
    learning_rate: float = 0.1
    max_iter: int = 100
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    random_state: int = 0


@dataclass
class ValuePredictions:
    """Row k = customer ``users[k]`` (dense user index); all arrays float64[n]."""

    users: NDArray[np.int64]
    expected_purchases: Array
    expected_revenue: Array
    p_alive: Array
    tenure_days: Array  # T: days since the first purchase (who counts as a new customer)


@dataclass
class ValueResult:
    kind: str  # one of KINDS
    predictions: ValuePredictions
    metrics: dict[str, Any] = field(default_factory=dict)
    correction: Correction | None = None  # the trained correction of the gbm and blend kinds

    def new_customer(self, horizon_days: float) -> dict[str, float]:
        """The mean prediction of the customers whose first purchase lies within the last horizon (all
        customers when there are none): what a shopper about to become a customer is worth."""
        p = self.predictions
        new = p.tenure_days <= horizon_days
        rows = new if new.any() else np.ones(len(p.users), dtype=bool)
        if not rows.any():
            return {"expected_purchases": 0.0, "expected_revenue": 0.0, "p_alive": 1.0}
        return {
            "expected_purchases": float(p.expected_purchases[rows].mean()),
            "expected_revenue": float(p.expected_revenue[rows].mean()),
            "p_alive": float(p.p_alive[rows].mean()),
        }


@dataclass(frozen=True)
class Btyd:
    bg: BGNBD
    gg: GammaGamma | None
    mean_spend: float  # mean transaction value: the spend of customers Gamma-Gamma cannot speak for

    def spend(self, s: Summary) -> Array:
        """Expected value of a future transaction per customer."""
        if self.gg is None:
            return np.full(len(s), self.mean_spend)
        gg = self.gg.expected_spend(s.x, s.m)
        # Gamma-Gamma's population mean (x = 0) is infinite for q <= 1: the observed mean stands in
        fallback = gg if self.gg.q > 1 else np.full(len(s), self.mean_spend)
        return np.where(s.x > 0, gg, fallback)

    def predict(self, s: Summary, horizon_days: float) -> tuple[Array, Array, Array]:
        """(expected transactions, expected revenue, p_alive), each float64[len(s)]."""
        purchases = self.bg.expected_purchases(horizon_days, s.x, s.t_x, s.T)
        return purchases, purchases * self.spend(s), self.bg.p_alive(s.x, s.t_x, s.T)


FIT_MAX_CUSTOMERS = 100_000


def fit_btyd(s: Summary) -> Btyd:
    """BG/NBD on every customer, Gamma-Gamma on the repeat ones with a positive spend.

    A plain MLE can run off to a degenerate edge on small or odd data (a or b unbounded, predictions
    not finite); a light penalty then keeps it finite. Raises ValueError without customers.
    """
    # four (three) parameters are pinned long before a million customers; each likelihood evaluation
    # is not, and a fit takes ~10^3 of them
    rows = np.arange(len(s))
    if len(s) > FIT_MAX_CUSTOMERS:
        rows = np.sort(np.random.default_rng(0).choice(len(s), FIT_MAX_CUSTOMERS, replace=False))
    x, t_x, T, m = s.x[rows], s.t_x[rows], s.T[rows], s.m[rows]
    bg = fit_bgnbd_usable(x, t_x, T, horizon_days=30.0)
    try:
        gg: GammaGamma | None = fit_gamma_gamma(x, m)
    except ValueError:  # no prices, or no repeat customers yet
        gg = None
    n_transactions = float((s.x + 1).sum())
    mean_spend = float(s.total.sum() / n_transactions) if n_transactions else 0.0
    return Btyd(bg=bg, gg=gg, mean_spend=mean_spend)


def _design(log: EventLog, s: Summary, btyd: Btyd, horizon_days: float) -> NDArray[np.float32]:
    """Correction inputs per customer: the summary, the BTYD outputs, the behaviour features."""
    purchases, revenue, alive = btyd.predict(s, horizon_days)
    own = np.column_stack([s.x, s.t_x, s.T, s.T - s.t_x, s.m, s.first, s.total, purchases, revenue, alive,
                           btyd.spend(s)])  # fmt: skip
    behaviour = build_features(log, s.cutoff, FeatureSpec()).X[s.users]
    return np.hstack([own.astype(np.float32), behaviour])


def _regressor(config: ValueConfig, loss: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        loss=loss, learning_rate=config.learning_rate, max_iter=config.max_iter,
        max_leaf_nodes=config.max_leaf_nodes, min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization, random_state=config.random_state,
    )  # fmt: skip


#: The served candidates besides plain BTYD: the correction alone, or averaged with BTYD; revenue
#: regressed to its mean (Poisson) or to its median (absolute error: what MAE rewards).
KINDS = ("btyd", "gbm_mean", "gbm_median", "blend_mean", "blend_median")


@dataclass
class Correction:
    purchases: Any
    revenue_mean: Any
    revenue_median: Any

    def predict(self, X: NDArray[np.float32], kind: str) -> tuple[Array, Array]:
        revenue = self.revenue_mean if kind.endswith("mean") else self.revenue_median
        with openmp_threads(1):
            return (np.maximum(self.purchases.predict(X), 0.0).astype(np.float64),
                    np.maximum(revenue.predict(X), 0.0).astype(np.float64))  # fmt: skip


def _train_correction(log: EventLog, cutoffs: list[float], config: ValueConfig) -> Correction | None:
    """Gradient boosting on the stacked rows of ``cutoffs``; None with too few customers."""
    h = config.horizon_days
    xs, ps, rs = [], [], []
    for cutoff in cutoffs:
        s = summarise(log, cutoff)
        if len(s) < 2 or (s.x > 0).sum() < 2:
            continue
        purchases, revenue = outcome(log, cutoff, h)
        xs.append(_design(log, s, fit_btyd(s), h))
        ps.append(purchases[s.users])
        rs.append(revenue[s.users])
    if not xs or sum(len(x) for x in xs) < config.min_train_customers:
        return None
    X, p, r = np.vstack(xs), np.concatenate(ps), np.concatenate(rs)
    if len(X) > config.max_train_rows:
        keep = np.random.default_rng(config.random_state).choice(len(X), config.max_train_rows, replace=False)
        X, p, r = X[keep], p[keep], r[keep]
    if not (p > 0).any() or not (r > 0).any():
        return None  # nobody bought in the training windows: nothing for a Poisson fit to learn
    with openmp_threads(1):  # rows are few: OpenMP threads cost more than they give on a shared box
        return Correction(_regressor(config, "poisson").fit(X, p), _regressor(config, "poisson").fit(X, r),
                          _regressor(config, "absolute_error").fit(X, r))  # fmt: skip


def _predict(
    log: EventLog, cutoff: float, kinds: tuple[str, ...], correction: Correction | None, h: float,
    btyd: Btyd | None = None,
) -> dict[str, ValuePredictions]:
    """Predictions of each of ``kinds`` at ``cutoff`` (the BTYD fit and the design matrix shared);
    ``btyd``: the fit to use, else one on ``log``'s customers."""
    s = summarise(log, cutoff)
    btyd = fit_btyd(s) if btyd is None else btyd
    purchases, revenue, alive = btyd.predict(s, h)
    X = _design(log, s, btyd, h) if correction is not None and kinds != ("btyd",) else None
    out = {}
    for kind in kinds:
        p, r = purchases, revenue
        if kind != "btyd" and correction is not None and X is not None:
            p, r = correction.predict(X, kind)
            if kind.startswith("blend"):
                p, r = (p + purchases) / 2, (r + revenue) / 2
        out[kind] = ValuePredictions(s.users, p, r, alive, s.T)
    return out


def choose(metrics: dict[str, Any], kinds: tuple[str, ...], rank_slack: float = 0.01) -> str:
    """The candidate with the lowest validation MAE among those that rank nearly as well as the best
    (top-10 % revenue share within ``rank_slack``): a median regressor can win MAE by predicting ~0
    for almost everyone, and audiences and percentiles are rankings."""
    best_rank = max(metrics[k]["top10_share"] for k in kinds)
    ranked = [k for k in kinds if metrics[k]["top10_share"] >= best_rank - rank_slack]
    return min(ranked, key=lambda k: metrics[k]["mae"])


def train_value(log: EventLog, now: float, config: ValueConfig = ValueConfig()) -> ValueResult:
    """Validate BTYD and its correction on the last complete horizon, then predict every customer at
    ``now`` with the better one (see the module docstring). Raises ValueError without customers."""
    h = config.horizon_days
    log = log.select(log.ts < now) if bool((log.ts >= now).any()) else log
    if len(summarise(log, now)) == 0:
        raise ValueError("no purchases yet: no customer to value")
    stride = h * DAY / config.n_train_windows  # overlapping outcome windows: more rows from short histories
    val_cut = now - h * DAY
    metrics: dict[str, Any] = {"horizon_days": h}
    kind = "btyd"
    if len(summarise(log, val_cut)) > 0:
        actual_p, actual_r = outcome(log, val_cut, h)
        holdout = _train_correction(log, [val_cut - h * DAY - k * stride for k in range(config.n_train_windows)],
                                    config)  # fmt: skip
        kinds = KINDS if holdout is not None else ("btyd",)
        for name, pred in _predict(log, val_cut, kinds, holdout, h).items():
            metrics[name] = value_metrics(actual_r[pred.users], pred.expected_revenue,
                                          actual_p[pred.users], pred.expected_purchases)  # fmt: skip
        kind = choose(metrics, kinds)
        metrics.update(status="ok", eval_cutoff=val_cut, customers=metrics["btyd"]["n"])
    else:
        metrics["status"] = "unvalidated: no customer a horizon ago"
    correction = None
    if kind != "btyd":
        correction = _train_correction(log, [val_cut - k * stride for k in range(config.n_train_windows)], config)
        kind = kind if correction is not None else "btyd"
    metrics["kind"] = kind
    return ValueResult(kind=kind, predictions=_predict(log, now, (kind,), correction, h)[kind], metrics=metrics,
                       correction=correction)  # fmt: skip


def predict_at(log: EventLog, now: float, trained: ValueResult, btyd: Btyd, horizon_days: float) -> ValuePredictions:
    """A trained model's predictions for the customers of `log` (a user shard's) with the BTYD fit of
    every customer (`fit_btyd` of the shop's summary): the shop-wide predictions' rows."""
    return _predict(log, now, (trained.kind,), trained.correction, horizon_days, btyd)[trained.kind]
