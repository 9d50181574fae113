"""The propensity stage of a rebuild: train and score every target, publish per-user scores."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.propensity import (
    DAY,
    TIERS,
    FeatureMatrix,
    FeatureSpec,
    PropensityConfig,
    PropensityModel,
    PropensityScores,
    Target,
    build_features,
    describe_value,
    percentiles,
    score_users,
    tiers,
    train_propensity,
)
from app.settings import Settings
from app.store.versions import VersionWriter
from app.worker.load import Snapshot

log = logging.getLogger(__name__)


@dataclass
class TargetBuild:
    model: PropensityModel
    scores: PropensityScores


@dataclass
class PropensityBuild:
    horizon_days: float
    targets: dict[str, TargetBuild] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, str]:
        return {
            "propensity_targets": ",".join(self.targets),
            "propensity_horizon_days": str(self.horizon_days),
            "propensity_base_rates": json.dumps({t: b.scores.base_rate for t, b in self.targets.items()}),
        }


#: Users per target whose top factors are computed (the most likely ones); the rest get none.
FACTOR_USERS = 20_000
#: Above this many users, one calibrated booster serves instead of the average of one per fold.
ENSEMBLE_MAX_USERS = 200_000


def build_propensity(snapshot: Snapshot, settings: Settings) -> PropensityBuild:
    """Train, validate and score every configured target.

    At scale, scoring dominates (every user, and ~20 predictions per explained user): above
    ENSEMBLE_MAX_USERS one booster serves instead of three (3x cheaper per prediction, ~0.005 AUC
    lower), and factors are computed for the FACTOR_USERS most likely users per target.
    """
    config = dataclasses.replace(
        PropensityConfig(), horizon_days=settings.propensity_horizon_days,
        calibration_ensemble=snapshot.log.n_users <= ENSEMBLE_MAX_USERS,
    )  # fmt: skip
    categories = [item["categories"] for item in snapshot.catalog.items]
    build = PropensityBuild(horizon_days=config.horizon_days)
    cache: dict[tuple[float, FeatureSpec], FeatureMatrix] = {}
    targets = [Target.parse(name) for name in settings.propensity_targets]
    for i, target in enumerate(targets):
        horizon = _trainable_horizon(snapshot, config.horizon_days)
        if horizon is None:
            build.metrics[str(target)] = {"status": "skipped", "reason": "no event history yet"}
            continue
        cfg = dataclasses.replace(config, horizon_days=horizon)
        try:
            result = train_propensity(
                snapshot.log, snapshot.now, target, config=cfg, item_categories=categories,
                user_attributes=snapshot.user_attributes, feature_cache=cache,
                more_targets=reads_same_features(target, targets[i + 1 :]),
            )
        except ValueError as exc:  # not enough history yet: nothing to publish for this target
            build.metrics[str(target)] = {"status": "skipped", "reason": str(exc)}
            continue
        spec = result.model.spec
        if (snapshot.now, spec) not in cache:
            cache[(snapshot.now, spec)] = build_features(
                snapshot.log, snapshot.now, spec, item_categories=categories, user_attributes=snapshot.user_attributes
            )
        scores = score_users(
            result.model, snapshot.log, snapshot.now, item_categories=categories,
            user_attributes=snapshot.user_attributes, factor_limit=FACTOR_USERS, features=cache[(snapshot.now, spec)],
        )
        if horizon < config.horizon_days:
            scores = stretch(scores, target, horizon, config.horizon_days)
            result.metrics["provisional_horizon_days"] = horizon
        build.targets[str(target)] = TargetBuild(result.model, scores)
        build.metrics[str(target)] = result.metrics
    return build


def reads_same_features(target: Target, later: list[Target]) -> bool:
    """Whether a later target trains on the same feature matrices (those of the same category, as
    purchase and churn): then the matrices `target`'s validation built are kept for it."""
    return any(t.category == target.category for t in later)


def _trainable_horizon(snapshot: Snapshot, horizon_days: float) -> float | None:
    """`trainable_horizon` of the snapshot's history; None without any events."""
    if len(snapshot.log) == 0:
        return None
    return trainable_horizon((snapshot.now - float(snapshot.log.ts.min())) / DAY, horizon_days)


def trainable_horizon(span_days: float, horizon_days: float) -> float:
    """The horizon to train on: the configured one when history spans three horizons (two training
    windows and a holdout), else a third of the history, at least a day."""
    if span_days >= 3 * horizon_days:
        return horizon_days
    return max(1.0, min(horizon_days, span_days / 3.0))


def stretch(scores: PropensityScores, target: Target, short: float, horizon: float) -> PropensityScores:
    """Probabilities over a short horizon -> over the configured one, assuming a constant hazard.

    A young shop has too little history to observe full horizons; until it has, scores are trained on
    the longest horizon the data allows and flagged `provisional_horizon_days` in the metrics.
    """
    ratio = horizon / short
    p = scores.probability.astype(np.float64)
    stretched = p**ratio if target.kind == "churn" else 1.0 - (1.0 - p) ** ratio
    base = float(scores.base_rate**ratio if target.kind == "churn" else 1.0 - (1.0 - scores.base_rate) ** ratio)
    return dataclasses.replace(
        scores, probability=stretched.astype(np.float32), percentile=percentiles(stretched),
        tier=tiers(stretched, base), base_rate=base, horizon_days=horizon,
    )


def _number(x: float) -> str:
    """A float exactly as `json.dumps` writes it."""
    return repr(x) if math.isfinite(x) else json.dumps(x)


def _user_records(build: TargetBuild) -> Any:
    """(user id, JSON record) per user: `{"p", "pc", "t", "f": [Factor.as_dict(), ...]}`, byte for
    byte what `json.dumps(..., separators=(",", ":"))` makes of them, built with string formatting:
    a million shoppers' dataclasses and dumps took minutes. A factor's text depends only on its
    feature and value, so each distinct (feature, value) is described once."""
    s, model = build.scores, build.model
    names = [json.dumps(name) for name in model.feature_names]
    cap, category = model.spec.recency_cap_days, model.spec.category or "category"
    texts: dict[tuple[int, float], str] = {}

    def factor(f: int, i: float, v: float) -> str:
        text = texts.get((f, v))
        if text is None:
            text = texts[(f, v)] = json.dumps(describe_value(model.feature_names[f], v, cap, category))
        return (f'{{"feature":{names[f]},"text":{text},"direction":"{"up" if i > 0 else "down"}",'
                f'"impact":{_number(round(i, 4))},"value":{_number(round(v, 3))}}}')

    tier_names = [TIERS[t] for t in s.tier.tolist()]
    columns = zip(s.user_ids.tolist(), s.probability.tolist(), s.percentile.tolist(), tier_names,
                  s.factor_feature.tolist(), s.factor_impact.tolist(), s.factor_value.tolist(), strict=True)
    for user, p, pc, tier, feats, impacts, values in columns:
        factors = ",".join(factor(f, i, v) for f, i, v in zip(feats, impacts, values, strict=True) if f >= 0)
        yield str(user), f'{{"p":{_number(round(p, 6))},"pc":{_number(round(pc, 4))},"t":"{tier}","f":[{factors}]}}'


def publish_propensity(writer: VersionWriter, snapshot: Snapshot, build: PropensityBuild) -> list[str]:
    """Write per-user scores (hash) and audiences (sorted set) per target; returns the per-user parts."""
    parts: list[str] = []
    for target, target_build in build.targets.items():
        writer.hash(f"prop:{target}", _user_records(target_build))
        s = target_build.scores
        order = np.argsort(-s.probability, kind="stable")
        writer.zset(f"aud:{target}", ((str(s.user_ids[k]), float(s.probability[k])) for k in order))
        parts.append(f"prop:{target}")
    return parts


def audience_parts(build: PropensityBuild) -> list[str]:
    return [f"aud:{target}" for target in build.targets]
