"""The propensity classifier: calibrated gradient boosting, its small-data fallbacks, and the fitted model.

Choices (see ``algo`` for the training windows they are fit on):

* ``HistGradientBoostingClassifier`` with class weights (the minority class weighted
  ``sqrt(majority / minority)``, at most ``max_class_weight``) inside ``CalibratedClassifierCV``
  (3 folds, grouped by user so a user's stacked rows stay in one fold): each fold's booster is fit
  weighted and calibrated on its held-out fold *unweighted*, so the averaged output is a
  probability of the true base rate, not of the re-weighted one. Isotonic calibration once both
  classes have ``isotonic_min_class`` rows, sigmoid below. The booster reads quantile bin codes
  (``algo_binning``: scikit-learn's own binning is slow under sample weights).
* Training rows are a seeded sample of at most ``max_train_rows`` (split evenly over the stacked
  windows): the booster's accuracy saturates long before a million shoppers, its cost does not.
* Fewer than ``min_users`` rows or ``min_positives`` rows in the minority class: a logistic
  regression on log-damped, standardised features, unweighted (maximum likelihood is calibrated
  in-sample, and there is too little data to hold out for recalibration). One class only: a
  constant base-rate model.
* Threshold: the probability maximising F1 on the training rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from app.common.threads import openmp_threads
from app.eventlog import unique_sorted
from app.propensity.algo_binning import QuantileBinner, group_folds
from app.propensity.algo_explain import feature_importance
from app.propensity.algo_metrics import best_f1_threshold
from app.propensity.features import FeatureSpec
from app.propensity.features_labels import Target


@dataclass(frozen=True)
class PropensityConfig:
    """Training defaults; every field is a knob the worker may override.

    n_train_windows:      cut-offs stacked per fit (see the module docstring)
    min_users / min_positives: below these (rows, minority-class rows) the logistic fallback
    isotonic_min_class:   isotonic calibration when both classes have this many rows, else sigmoid
    calibration_ensemble: average the per-fold calibrated boosters (True, measured better by
                          ~0.005 AUC) or refit one booster on all rows (3x cheaper to predict)
    max_threads / single_thread_below: OpenMP threads for fit and predict; inputs smaller than
                          ``single_thread_below`` rows run single-threaded (faster, and polite to
                          the API processes sharing the box)
    max_train_rows:       rows per fit, all windows together (a seeded sample of the users above it)
    purchase_cycle:       add the purchase-cycle features (``features_cycle``) unless validation a
                          horizon before the holdout finds them ``cycle_tolerance`` AUC worse (the
                          floor of noise between two fits on one window, as recommend's 0.002 margins)
    """

    horizon_days: float = 30.0
    windows: tuple[int, ...] = (7, 30, 90)
    n_train_windows: int = 2
    min_users: int = 200
    min_positives: int = 20
    isotonic_min_class: int = 1000
    calibration_folds: int = 3
    max_class_weight: float = 5.0
    learning_rate: float = 0.1
    max_iter: int = 150
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    max_attribute_levels: int = 10
    random_state: int = 0
    calibration_ensemble: bool = True
    max_threads: int | None = None
    single_thread_below: int = 200_000
    max_train_rows: int = 100_000
    purchase_cycle: bool = True
    cycle_tolerance: float = 0.002


@dataclass
class PropensityModel:
    """A fitted model plus everything scoring and explanations need (kept in the worker's memory).

    kind:       "gbm", "logistic" or "constant"
    reference:  float32[n_features], the median of each feature over the training rows; the
                baseline an explanation compares a user against
    base_rate:  share of positives in the training rows
    threshold:  probability maximising F1 on the training rows
    """

    target: Target
    horizon_days: float
    spec: FeatureSpec
    feature_names: list[str]
    feature_descriptions: list[str]
    kind: str
    estimator: Any
    base_rate: float
    threshold: float
    reference: NDArray[np.float32]
    calibration: str = "none"
    n_train: int = 0
    n_positive: int = 0
    cutoffs: tuple[float, ...] = ()
    fit_seconds: float = 0.0
    max_threads: int | None = None
    single_thread_below: int = 200_000
    importance: NDArray[np.float32] | None = None

    def threads(self, n_rows: int) -> int | None:
        """OpenMP threads for ``n_rows``: one on small inputs, where threads cost more than they give
        (and far more on a busy box), else ``max_threads`` (None = the library default)."""
        return 1 if n_rows < self.single_thread_below else self.max_threads

    def predict_proba(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        """float64[n]: calibrated probability of the target within the horizon, per row of X."""
        if self.kind == "constant":
            return np.full(len(X), self.base_rate, dtype=np.float64)
        X64 = np.asarray(X, dtype=np.float64)  # converted once, not once per calibrated booster
        with openmp_threads(self.threads(len(X))):
            return np.asarray(self.estimator.predict_proba(X64)[:, 1], dtype=np.float64)


def _log_damp(X: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.sign(X) * np.log1p(np.abs(X))


def _class_weight(y: NDArray[np.bool_], cap: float) -> dict[int, float] | None:
    pos = int(y.sum())
    ratio = (len(y) - pos) / max(pos, 1)
    if ratio > 1.0:
        return {0: 1.0, 1: float(min(np.sqrt(ratio), cap))}
    return {0: float(min(np.sqrt(1.0 / ratio), cap)), 1: 1.0}


def _groups_per_class(y: NDArray[np.bool_], groups: NDArray[np.int64]) -> int:
    """The fewer of: groups with a positive row, groups with a negative row (bounds the fold count)."""
    return min(len(unique_sorted(groups[y])), len(unique_sorted(groups[~y])))


def fit_model(
    X: NDArray[np.float32],
    y: NDArray[np.bool_],
    *,
    target: Target,
    spec: FeatureSpec,
    names: list[str],
    descriptions: list[str],
    config: PropensityConfig = PropensityConfig(),
    groups: NDArray[np.int64] | None = None,
    cutoffs: tuple[float, ...] = (),
) -> PropensityModel:
    """Fit on rows X (float32[n, d]) and labels y (bool[n]); ``groups`` (user per row) keeps a user's
    stacked rows in one calibration fold."""
    start = time.perf_counter()
    y = np.asarray(y, dtype=bool)
    n, pos = len(y), int(y.sum())
    minority = min(pos, n - pos)
    reference = np.nanmedian(X, axis=0).astype(np.float32) if n else np.zeros(X.shape[1], np.float32)
    reference = np.where(np.isnan(reference), 0.0, reference).astype(np.float32)
    common = dict(target=target, horizon_days=config.horizon_days, spec=spec, feature_names=names,
                  feature_descriptions=descriptions, reference=reference, n_train=n, n_positive=pos,
                  cutoffs=cutoffs, base_rate=pos / n if n else 0.0, max_threads=config.max_threads,
                  single_thread_below=config.single_thread_below)  # fmt: skip
    estimator: Any
    if minority == 0:
        return PropensityModel(kind="constant", estimator=None, threshold=0.5, **common)  # type: ignore[arg-type]
    if n < config.min_users or minority < config.min_positives:
        kind, calibration = "logistic", "none"
        estimator = make_pipeline(
            FunctionTransformer(_log_damp),
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=1.0, max_iter=2000),
        )
        estimator.fit(X.astype(np.float64), y)
    else:
        kind = "gbm"
        calibration = "isotonic" if minority >= config.isotonic_min_class else "sigmoid"
        grp = groups if groups is not None else np.arange(n)
        folds = min(config.calibration_folds, _groups_per_class(y, grp))
        gbm = HistGradientBoostingClassifier(
            learning_rate=config.learning_rate,
            max_iter=config.max_iter,
            max_leaf_nodes=config.max_leaf_nodes,
            min_samples_leaf=config.min_samples_leaf,
            l2_regularization=config.l2_regularization,
            early_stopping=n >= 2000,
            class_weight=_class_weight(y, config.max_class_weight),
            random_state=config.random_state,
        )
        splits = group_folds(y, grp, folds, seed=config.random_state)
        estimator = CalibratedClassifierCV(
            make_pipeline(QuantileBinner(), gbm), method=calibration, cv=splits, ensemble=config.calibration_ensemble
        )
        # OpenMP threads cost more than they give on small data, badly so on a busy box.
        with openmp_threads(1 if n < config.single_thread_below else config.max_threads):
            estimator.fit(X, y)
    model = PropensityModel(kind=kind, estimator=estimator, calibration=calibration, threshold=0.5, **common)  # type: ignore[arg-type]
    model.threshold = best_f1_threshold(y, model.predict_proba(X))
    model.importance = feature_importance(model, X, seed=config.random_state)
    model.fit_seconds = time.perf_counter() - start
    return model
