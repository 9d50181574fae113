"""Fit a calibrated propensity model the way a live service must, and measure it on a time holdout.

Design (``h`` = horizon, ``now`` = the rebuild time; labels of cut-off T are events in [T, T + h)):

* **Production model.** Features at cut-off ``now - h`` (events before it), labels from
  ``[now - h, now)``: the freshest complete outcome window there is. With ``n_train_windows = k``
  the cut-offs ``now - h, now - 2h, ..., now - k·h`` are stacked (more rows, the same user may
  appear once per window). The model then scores every user on features at ``now``.
* **Holdout metrics.** The very same recipe shifted one horizon back: train on cut-offs ending at
  ``now - 2h`` (labels up to ``now - h``), evaluate on cut-off ``now - h`` with labels
  ``[now - h, now)``. No label the holdout model saw overlaps the evaluation window, and the
  evaluation matches production exactly: "fit on the last complete window, predict the next one".
  The reported metrics therefore estimate how the production model will do over the next horizon.
* **Population.** A window's rows are the users with at least one event before its cut-off; users
  who do not exist yet carry no signal, and churn is undefined for them.
* **Model.** Calibrated gradient boosting with class weights, a logistic fallback on small data, a
  constant on one class: see ``algo_model``.
* **Threshold.** The probability maximising F1 on the training rows; used for the
  precision/recall/F1 that the metrics report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.propensity.algo_metrics import evaluate
from app.propensity.algo_model import PropensityConfig, PropensityModel, fit_model
from app.propensity.features import FeatureMatrix, FeatureSpec, build_features, without_cycle
from app.propensity.features_labels import DAY, Target, active_before, labels

__all__ = ["PropensityConfig", "PropensityModel", "TrainResult", "fit_model", "train_propensity"]


@dataclass
class TrainResult:
    """The production model and its holdout metrics (JSON-serialisable dict)."""

    model: PropensityModel
    metrics: dict[str, Any] = field(default_factory=dict)


def _top_features(model: PropensityModel, n: int = 10) -> list[dict[str, Any]]:
    """The globally most important features (mean |impact| in probability) with their descriptions."""
    if model.importance is None:
        return []
    order = np.argsort(-model.importance, kind="stable")[:n]
    return [
        {"feature": model.feature_names[k], "description": model.feature_descriptions[k],
         "importance": round(float(model.importance[k]), 5)}
        for k in order.tolist() if model.importance[k] > 0
    ]  # fmt: skip


def train_propensity(
    log: EventLog,
    now: float,
    target: Target | str,
    *,
    config: PropensityConfig = PropensityConfig(),
    item_categories: Sequence[Sequence[str]] | None = None,
    user_attributes: Sequence[Mapping[str, Any] | None] | None = None,
    feature_cache: dict[tuple[float, FeatureSpec], FeatureMatrix] | None = None,
    more_targets: bool = False,
) -> TrainResult:
    """Holdout metrics, then the production model (see the module docstring for the windows).

    now: epoch seconds; events at ``ts >= now`` are ignored entirely. feature_cache: feature
    matrices by (cut-off, spec), shared between targets of one rebuild (purchase and churn read the
    same ones; building one is a pass over every event). On return it holds the production cut-offs'
    and the caller's matrices at ``now``; with ``more_targets`` also every matrix built from the events,
    for the next target's validation (only slices, cheap to cut again, are dropped).
    """
    target = Target.parse(target) if isinstance(target, str) else target
    h = config.horizon_days * DAY
    spec = FeatureSpec.fit(
        user_attributes,
        category=target.category,
        windows=config.windows,
        max_levels=config.max_attribute_levels,
        purchase_cycle=config.purchase_cycle,
        horizon_days=config.horizon_days,
    )
    log = log.select(log.ts < now) if bool((log.ts >= now).any()) else log
    cache: dict[tuple[float, FeatureSpec], FeatureMatrix] = {} if feature_cache is None else feature_cache
    sliced: set[tuple[float, FeatureSpec]] = set()

    def features(cutoff: float) -> FeatureMatrix:
        if (cutoff, spec) not in cache:
            fuller = (cutoff, dataclasses.replace(spec, purchase_cycle=True))
            if not spec.purchase_cycle and fuller in cache:  # the plain columns are a subset: no second pass
                cache[(cutoff, spec)] = without_cycle(cache[fuller], spec)
                sliced.add((cutoff, spec))
            else:
                cache[(cutoff, spec)] = build_features(
                    log, cutoff, spec, item_categories=item_categories, user_attributes=user_attributes
                )
        return cache[(cutoff, spec)]

    def cut(j: int) -> float:
        return now - j * h  # every cut-off computed the same way, so the cache keys match exactly

    def rows(
        first: int,
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.int64], tuple[float, ...], FeatureMatrix | None]:
        """Stacked rows of the cut-offs ``cut(first), cut(first + 1), ...`` (n_train_windows of them)."""
        xs, ys, gs, cuts = [], [], [], []
        fm = None
        per_window = max(1, config.max_train_rows // config.n_train_windows)
        for k in range(config.n_train_windows):
            cutoff = cut(first + k)
            pop = np.flatnonzero(active_before(log, cutoff))
            if len(pop) == 0:
                break
            if len(pop) > per_window:
                rng = np.random.default_rng(config.random_state + first + k)
                pop = np.sort(rng.choice(pop, per_window, replace=False))
            fm = features(cutoff)
            xs.append(fm.X[pop])
            ys.append(labels(log, cutoff, config.horizon_days, target, item_categories)[pop])
            gs.append(pop.astype(np.int64))
            cuts.append(cutoff)
        if not xs:
            return np.zeros((0, 0), np.float32), np.zeros(0, bool), np.zeros(0, np.int64), (), None
        return np.vstack(xs), np.concatenate(ys), np.concatenate(gs), tuple(cuts), fm

    def fit(first: int) -> PropensityModel | None:
        X, y, g, cuts, fm = rows(first)
        if fm is None:
            return None
        return fit_model(X, y, target=target, spec=spec, names=fm.names, descriptions=fm.descriptions,
                         config=config, groups=g, cutoffs=cuts)  # fmt: skip

    def validation_auc(first: int) -> float | None:
        """AUC at cut(first) of a model fit on the windows before it; None when it cannot be measured."""
        model = fit(first + 1)
        pop = np.flatnonzero(active_before(log, cut(first)))
        if model is None or len(pop) == 0:
            return None
        if len(pop) > config.max_train_rows:
            pop = np.sort(np.random.default_rng(config.random_state).choice(pop, config.max_train_rows, replace=False))
        y = labels(log, cut(first), config.horizon_days, target, item_categories)[pop]
        if y.all() or not y.any():
            return None
        return float(evaluate(y, model.predict_proba(features(cut(first)).X[pop]), model.threshold)["auc"])

    metrics: dict[str, Any] = {"target": str(target), "horizon_days": config.horizon_days}
    tried = {spec}
    if spec.purchase_cycle:
        # kept unless it hurts by more than noise: both variants on the window before the holdout's
        # (the holdout stays an unbiased estimate of the served model)
        with_cycle = validation_auc(2)
        full, spec = spec, dataclasses.replace(spec, purchase_cycle=False)
        tried.add(spec)
        plain = validation_auc(2)
        keep = with_cycle is None or plain is None or with_cycle >= plain - config.cycle_tolerance
        spec = full if keep else spec
        metrics["purchase_cycle"] = {"kept": keep, "validation_auc_with": with_cycle, "validation_auc_without": plain}
    holdout = fit(2)
    eval_pop = np.flatnonzero(active_before(log, cut(1)))
    if len(eval_pop) > config.max_train_rows:  # the metrics are as precise on a sample this size
        rng = np.random.default_rng(config.random_state)
        eval_pop = np.sort(rng.choice(eval_pop, config.max_train_rows, replace=False))
    if holdout is None or len(eval_pop) == 0:
        metrics["status"] = "insufficient_history"
    else:
        p = holdout.predict_proba(features(cut(1)).X[eval_pop])
        y_eval = labels(log, cut(1), config.horizon_days, target, item_categories)[eval_pop]
        metrics.update(evaluate(y_eval, p, holdout.threshold))
        metrics.update(
            status="ok",
            holdout_model=holdout.kind,
            holdout_train_rows=holdout.n_train,
            holdout_train_positives=holdout.n_positive,
            train_cutoffs=list(holdout.cutoffs),
            eval_cutoff=cut(1),
        )
    production = {(cut(1 + k), spec) for k in range(config.n_train_windows)}
    for key in [key for key in cache if key[1] in tried and key not in production and key[0] != now]:
        if not more_targets or key in sliced:
            del cache[key]  # only the production cut-offs are read again, and the next target's
    model = fit(1)
    if model is None:
        raise ValueError("no events before now - horizon: not enough history to train a propensity model")
    metrics["model"] = {
        "kind": model.kind,
        "calibration": model.calibration,
        "train_rows": model.n_train,
        "train_positives": model.n_positive,
        "base_rate": model.base_rate,
        "threshold": model.threshold,
        "n_features": len(model.feature_names),
        "cutoffs": list(model.cutoffs),
        "fit_seconds": model.fit_seconds,
        "top_features": _top_features(model),
    }
    return TrainResult(model=model, metrics=metrics)
