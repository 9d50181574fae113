"""Propensity: calibrated probabilities that a user purchases (or churns) within a horizon.

Pure numpy/scikit-learn, no I/O. The worker calls, per target::

    result = train_propensity(log, now, "purchase", item_categories=..., user_attributes=...)
    scores = score_users(result.model, log, now, item_categories=..., user_attributes=...)
    # store scores.probability / percentile / tier / factor_* arrays and result.metrics

and renders a user's reasons with ``scores.factors(result.model, row)`` or ``top_factors``.
"""

from app.propensity.algo import PropensityConfig, PropensityModel, TrainResult, fit_model, train_propensity
from app.propensity.algo_explain import (
    Factor,
    describe_value,
    factor_arrays,
    feature_importance,
    render_factors,
    top_factors,
)
from app.propensity.algo_metrics import calibration_table, evaluate
from app.propensity.algo_score import (
    TIERS,
    PropensityScores,
    percentiles,
    score_users,
    tier_thresholds,
    tiers,
)
from app.propensity.features import FeatureMatrix, FeatureSpec, build_features
from app.propensity.features_labels import DAY, Target, active_before, labels

__all__ = [
    "DAY",
    "TIERS",
    "Factor",
    "FeatureMatrix",
    "FeatureSpec",
    "PropensityConfig",
    "PropensityModel",
    "PropensityScores",
    "Target",
    "TrainResult",
    "active_before",
    "build_features",
    "calibration_table",
    "describe_value",
    "evaluate",
    "factor_arrays",
    "feature_importance",
    "fit_model",
    "labels",
    "percentiles",
    "render_factors",
    "score_users",
    "tier_thresholds",
    "tiers",
    "top_factors",
    "train_propensity",
]
