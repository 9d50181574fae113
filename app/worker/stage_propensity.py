"""The propensity stage of a rebuild: train and score every target, publish per-user scores."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.propensity import (
    DAY,
    TIERS,
    PropensityConfig,
    PropensityModel,
    PropensityScores,
    Target,
    percentiles,
    render_factors,
    score_users,
    tiers,
    train_propensity,
)
from app.settings import Settings
from app.store.versions import VersionWriter
from app.worker.load import Snapshot

log = logging.getLogger(__name__)
_RENDER_CHUNK = 20_000


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


def build_propensity(snapshot: Snapshot, settings: Settings) -> PropensityBuild:
    config = dataclasses.replace(PropensityConfig(), horizon_days=settings.propensity_horizon_days)
    categories = [item["categories"] for item in snapshot.catalog.items]
    build = PropensityBuild(horizon_days=config.horizon_days)
    for name in settings.propensity_targets:
        target = Target.parse(name)
        horizon = _trainable_horizon(snapshot, config.horizon_days)
        if horizon is None:
            build.metrics[str(target)] = {"status": "skipped", "reason": "no event history yet"}
            continue
        cfg = dataclasses.replace(config, horizon_days=horizon)
        try:
            result = train_propensity(
                snapshot.log, snapshot.now, target, config=cfg, item_categories=categories,
                user_attributes=snapshot.user_attributes,
            )
        except ValueError as exc:  # not enough history yet: nothing to publish for this target
            build.metrics[str(target)] = {"status": "skipped", "reason": str(exc)}
            continue
        scores = score_users(
            result.model, snapshot.log, snapshot.now, item_categories=categories,
            user_attributes=snapshot.user_attributes,
        )
        if horizon < config.horizon_days:
            scores = _stretch(scores, target, horizon, config.horizon_days)
            result.metrics["provisional_horizon_days"] = horizon
        build.targets[str(target)] = TargetBuild(result.model, scores)
        build.metrics[str(target)] = result.metrics
    return build


def _trainable_horizon(snapshot: Snapshot, horizon_days: float) -> float | None:
    """The horizon to train on: the configured one when history spans three horizons (two training
    windows and a holdout), else a third of the history, at least a day. None without any events."""
    if len(snapshot.log) == 0:
        return None
    span_days = (snapshot.now - float(snapshot.log.ts.min())) / DAY
    if span_days >= 3 * horizon_days:
        return horizon_days
    return max(1.0, min(horizon_days, span_days / 3.0))


def _stretch(scores: PropensityScores, target: Target, short: float, horizon: float) -> PropensityScores:
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


def _user_records(build: TargetBuild) -> Any:
    s = build.scores
    n = len(s.user_ids)
    for start in range(0, n, _RENDER_CHUNK):
        stop = min(n, start + _RENDER_CHUNK)
        factors = render_factors(
            build.model, s.factor_feature[start:stop], s.factor_impact[start:stop], s.factor_value[start:stop]
        )
        for k in range(start, stop):
            record = {
                "p": round(float(s.probability[k]), 6),
                "pc": round(float(s.percentile[k]), 4),
                "t": TIERS[int(s.tier[k])],
                "f": [f.as_dict() for f in factors[k - start]],
            }
            yield str(s.user_ids[k]), json.dumps(record, separators=(",", ":"))


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
