"""The propensity and customer-value stages over user shards (`app.worker.stage_propensity`,
`app.worker.stage_value`).

Models are trained on the driver's user sample (the whole log on a shop under the sample's size, so
they are the in-process rebuild's). Scoring runs on the shards, with the shop-wide quantities some
features compare a shopper with (`ShopCycle`: the median purchase gap, the season, the BG/NBD fit;
the value model's BTYD fit) computed from every shard's small part. The driver gathers one number
per shopper per target for the shop-wide percentiles, tiers and the shoppers who get factors, and the
shards write their shoppers' records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.distributed.cluster import gather, share, submit
from app.distributed.shard_tasks import Part
from app.distributed.shards import ShardPlan
from app.propensity import (
    DAY,
    FeatureMatrix,
    FeatureSpec,
    PropensityConfig,
    PropensityModel,
    PropensityScores,
    Target,
    build_features,
    percentiles,
    tiers,
    train_propensity,
)
from app.propensity.algo_explain import factor_arrays
from app.propensity.features_blocks import Events
from app.propensity.features_cycle import CyclePart, ShopCycle, cycle_part, shop_cycle
from app.settings import Settings
from app.store.client import make_redis
from app.store.keys import Keys
from app.store.versions import VersionWriter
from app.value.algo import Btyd, ValueConfig, ValuePredictions, ValueResult, fit_btyd, predict_at, train_value
from app.value.summary import Summary, summarise
from app.worker.load import Snapshot
from app.worker.stage_propensity import (
    ENSEMBLE_MAX_USERS,
    FACTOR_USERS,
    PropensityBuild,
    TargetBuild,
    publish_propensity,
    reads_same_features,
    stretch,
    trainable_horizon,
)
from app.worker.stage_triggers import HIGH
from app.worker.stage_value import ValueBuild, publish_value


@dataclass
class ShardedTarget:
    model: PropensityModel
    features: list[Any]  # futures: each shard's FeatureMatrix as of now
    scores: PropensityScores  # shop-wide probability, percentile and tier; no ids, no factors
    factor_rows: NDArray[np.int64]  # shop-wide indices of the shoppers who get factors


@dataclass
class ShardedPropensity:
    horizon_days: float
    targets: dict[str, ShardedTarget] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, str]:
        return PropensityBuild(self.horizon_days, {t: TargetBuild(b.model, b.scores) for t, b in self.targets.items()},
                               self.metrics).meta()  # fmt: skip


def build_propensity(dask: Any, plan: ShardPlan, snaps: list[Any], sample: Part, settings: Settings,
                     oldest: float) -> ShardedPropensity:  # fmt: skip
    """`stage_propensity.build_propensity`: trained on the sample, every shard scored; `oldest`: the
    time of the shop's first event."""
    config = dataclasses.replace(
        PropensityConfig(), horizon_days=settings.propensity_horizon_days,
        calibration_ensemble=plan.n_users <= ENSEMBLE_MAX_USERS,
    )  # fmt: skip
    categories = [item["categories"] for item in plan.catalog.items]
    build = ShardedPropensity(horizon_days=config.horizon_days)
    cache: dict[tuple[float, FeatureSpec], FeatureMatrix] = {}
    shard_features: dict[FeatureSpec, list[Any]] = {}
    span_days = (plan.now - oldest) / DAY
    targets = [Target.parse(name) for name in settings.propensity_targets]
    for i, target in enumerate(targets):
        horizon = trainable_horizon(span_days, config.horizon_days)
        cfg = dataclasses.replace(config, horizon_days=horizon)
        try:
            result = train_propensity(sample.log, plan.now, target, config=cfg, item_categories=categories,
                                      user_attributes=sample.attributes, feature_cache=cache,
                                      more_targets=reads_same_features(target, targets[i + 1 :]))  # fmt: skip
        except ValueError as exc:  # not enough history yet: nothing to publish for this target
            build.metrics[str(target)] = {"status": "skipped", "reason": str(exc)}
            continue
        model = result.model
        if model.spec not in shard_features:  # targets trained on the same columns share the shards' matrices
            shop = _shop_cycle(dask, snaps, plan.now, model.spec) if model.spec.purchase_cycle else None
            shard_features[model.spec] = [submit(dask, _features, s, model.spec, categories, shop) for s in snaps]
        features = shard_features[model.spec]
        p = np.concatenate(gather(dask, [submit(dask, _probabilities, model, f) for f in features]))
        scores = _shop_scores(model, p, plan.now)
        rows = np.arange(len(p))
        if len(p) > FACTOR_USERS:
            rows = np.sort(rows[np.argsort(-p, kind="stable")[:FACTOR_USERS]])
        if horizon < config.horizon_days:
            scores = stretch(scores, target, horizon, config.horizon_days)
            result.metrics["provisional_horizon_days"] = horizon
        build.targets[str(target)] = ShardedTarget(model, features, scores, rows.astype(np.int64))
        build.metrics[str(target)] = result.metrics
    return build


def _shop_cycle(dask: Any, snaps: list[Any], now: float, spec: FeatureSpec) -> ShopCycle:
    parts: list[CyclePart] = gather(dask, [submit(dask, _cycle_part, s, now, spec) for s in snaps])
    return shop_cycle(parts, spec.recency_cap_days, spec.horizon_days)


def _cycle_part(snapshot: Snapshot, now: float, spec: FeatureSpec) -> CyclePart:
    ev = Events.visible(snapshot.log, now, spec.recency_cap_days)
    return cycle_part(snapshot.log, ev, now, spec.horizon_days)


def _features(
    snapshot: Snapshot, spec: FeatureSpec, categories: list[list[str]], shop: ShopCycle | None
) -> FeatureMatrix:
    return build_features(snapshot.log, snapshot.now, spec, item_categories=categories,
                          user_attributes=snapshot.user_attributes, shop=shop)  # fmt: skip


def _probabilities(model: PropensityModel, features: FeatureMatrix) -> NDArray[np.float64]:
    if features.names != model.feature_names:
        raise ValueError("feature columns at scoring time differ from the model's; rebuild the model")
    return np.asarray(model.predict_proba(features.X), dtype=np.float64)


def _shop_scores(model: PropensityModel, p: NDArray[np.float64], now: float) -> PropensityScores:
    """`score_users`' shop-wide columns (ids and factors are the shards')."""
    none = np.zeros((len(p), 0))
    return PropensityScores(
        user_ids=np.zeros(0, dtype=object), probability=p.astype(np.float32), percentile=percentiles(p),
        tier=tiers(p, model.base_rate), factor_feature=none.astype(np.int16), factor_impact=none.astype(np.float32),
        factor_value=none.astype(np.float32), feature_names=list(model.feature_names), base_rate=model.base_rate,
        cutoff=float(now), target=str(model.target), horizon_days=model.horizon_days,
    )  # fmt: skip


def _shard_target(snapshot: Snapshot, lo: int, target: _Scores, features: FeatureMatrix) -> TargetBuild:
    """The shard's rows of a target's scores, with its factors."""
    s, hi = target.scores, lo + snapshot.log.n_users
    rows = target.factor_rows[(target.factor_rows >= lo) & (target.factor_rows < hi)] - lo
    feat, impact, value = factor_arrays(target.model, features.X, rows, 3)
    n = snapshot.log.n_users

    def scatter(a: NDArray[Any], fill: float) -> NDArray[Any]:
        out = np.full((n, a.shape[1]), fill, dtype=a.dtype)
        out[rows] = a
        return out

    mine = dataclasses.replace(
        s, user_ids=snapshot.log.user_ids, probability=s.probability[lo:hi], percentile=s.percentile[lo:hi],
        tier=s.tier[lo:hi], factor_feature=scatter(feat, -1), factor_impact=scatter(impact, 0),
        factor_value=scatter(value, 0),
    )  # fmt: skip
    return TargetBuild(target.model, mine)


def high_tiers(
    dask: Any, snaps: list[Any], plan: ShardPlan, build: ShardedPropensity
) -> dict[str, NDArray[np.object_]]:
    """`stage_triggers.high_tiers`: each target's shoppers in the high tier."""
    out = {}
    for name, target in build.targets.items():
        rows = np.flatnonzero(target.scores.tier == HIGH)
        parts = []
        for s, shard in zip(snaps, plan.shards, strict=True):
            mine = rows[(rows >= shard.lo) & (rows < shard.hi)] - shard.lo
            if len(mine):
                parts.append(submit(dask, _ids, s, mine))
        out[name] = np.concatenate(gather(dask, parts)) if parts else np.zeros(0, dtype=object)
    return out


def _ids(snapshot: Snapshot, rows: NDArray[np.int64]) -> NDArray[np.object_]:
    return np.asarray(snapshot.log.user_ids[rows], dtype=object)


# customer value


@dataclass
class ShardedValue:
    """`ValueBuild` with the customers' records left for the shards to write."""

    horizon_days: float
    result: ValueResult | None = None  # shop-wide predictions (customers by shop-wide user index)
    percentile: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    metrics: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, str]:
        return ValueBuild(self.horizon_days, self.result).meta()

    def parts(self) -> tuple[list[str], list[str]]:
        return ValueBuild(self.horizon_days, self.result).parts()


def build_value(dask: Any, plan: ShardPlan, snaps: list[Any], sample: Part, settings: Settings) -> ShardedValue:
    """`stage_value.build_value`: the model chosen and trained on the sample, every customer predicted
    on their shard with the BTYD fit of every customer."""
    build = ShardedValue(horizon_days=settings.value_horizon_days)
    config = ValueConfig(horizon_days=settings.value_horizon_days)
    try:
        trained = train_value(sample.log, plan.now, config)
    except ValueError as exc:  # no customer yet: nothing to publish
        build.metrics = {"status": "skipped", "reason": str(exc)}
        return build
    los = [shard.lo for shard in plan.shards]
    summaries: list[Summary] = gather(dask, [submit(dask, _summary, s, lo) for s, lo in zip(snaps, los, strict=True)])
    btyd = fit_btyd(_concat_summaries(summaries, plan.now))
    parts: list[ValuePredictions] = gather(
        dask,
        [submit(dask, _predict, s, lo, trained, btyd, config.horizon_days) for s, lo in zip(snaps, los, strict=True)],
    )
    predictions = ValuePredictions(*(np.concatenate([getattr(p, f.name) for p in parts])
                                     for f in dataclasses.fields(ValuePredictions)))  # fmt: skip
    build.result = ValueResult(kind=trained.kind, predictions=predictions, metrics=trained.metrics)
    build.percentile = percentiles(predictions.expected_revenue)
    build.metrics = trained.metrics
    return build


def _summary(snapshot: Snapshot, lo: int) -> Summary:
    s = summarise(snapshot.log, snapshot.now)
    return dataclasses.replace(s, users=s.users + lo)


def _concat_summaries(parts: list[Summary], cutoff: float) -> Summary:
    columns = {f.name: np.concatenate([getattr(p, f.name) for p in parts])
               for f in dataclasses.fields(Summary) if f.name != "cutoff"}  # fmt: skip
    return Summary(**columns, cutoff=cutoff)


def _predict(snapshot: Snapshot, lo: int, trained: ValueResult, btyd: Btyd, horizon_days: float) -> ValuePredictions:
    p = predict_at(snapshot.log, snapshot.now, trained, btyd, horizon_days)
    return dataclasses.replace(p, users=p.users + lo)


def _shard_value(snapshot: Snapshot, lo: int, build: ShardedValue) -> ValueBuild:
    """The shard's customers of a shop-wide value build."""
    assert build.result is not None
    p = build.result.predictions
    mine = (p.users >= lo) & (p.users < lo + snapshot.log.n_users)
    local = ValuePredictions(*(getattr(p, f.name)[mine] for f in dataclasses.fields(ValuePredictions)))
    local.users = local.users - lo
    result = ValueResult(kind=build.result.kind, predictions=local, metrics=build.metrics)
    return ValueBuild(
        build.horizon_days, result, snapshot.log.user_ids[local.users], build.percentile[mine], build.metrics
    )


# publishing


def publish(dask: Any, snaps: list[Any], plan: ShardPlan, settings: Settings, writer: VersionWriter,
            propensity: ShardedPropensity, value: ShardedValue) -> tuple[list[str], list[str]]:  # fmt: skip
    """Each shard writes its shoppers' scores and values into the version's keys; returns the per-user
    hashes and sorted sets, for erasure."""
    shop_wide = share(dask, ({t: _Scores(b.model, b.scores, b.factor_rows) for t, b in propensity.targets.items()},
                             value))  # fmt: skip
    hashes, zsets = value.parts()
    hashes, zsets = (
        [*(f"prop:{t}" for t in propensity.targets), *hashes],
        [*(f"aud:{t}" for t in propensity.targets), *zsets],
    )
    # registered before any shard writes: a failed publish discards every key a shard may have written
    writer.written.extend(writer.keys.model(writer.version, part) for part in [*hashes, *zsets])
    written = gather(
        dask,
        [
            submit(
                dask,
                _publish_shard,
                s,
                shard.lo,
                settings,
                writer.version,
                shop_wide,
                {t: b.features[k] for t, b in propensity.targets.items()},
                propensity.horizon_days,
            )
            for k, (s, shard) in enumerate(zip(snaps, plan.shards, strict=True))
        ],
    )
    unexpected = {key for keys_written in written for key in keys_written} - set(writer.written)
    assert not unexpected, f"shards wrote parts the driver did not register: {sorted(unexpected)}"
    pipe = writer.client.pipeline(transaction=False)
    for part in [*hashes, *zsets]:
        pipe.persist(writer.keys.model(writer.version, part))  # whole now: the version's expiry is publish's
    pipe.execute()
    return hashes, zsets


@dataclass(frozen=True)
class _Scores:
    """A target's shop-wide scores, as the shards receive them."""

    model: PropensityModel
    scores: PropensityScores
    factor_rows: NDArray[np.int64]


def _publish_shard(
    snapshot: Snapshot,
    lo: int,
    settings: Settings,
    version: str,
    shop_wide: tuple[dict[str, _Scores], ShardedValue],
    features: dict[str, FeatureMatrix],
    horizon_days: float,
) -> list[str]:
    assert settings.redis_url
    targets, value = shop_wide
    client = make_redis(settings.redis_url, cluster=settings.redis_cluster)
    try:
        writer = VersionWriter(client, Keys.of(settings), version)
        local = PropensityBuild(
            horizon_days, {t: _shard_target(snapshot, lo, target, features[t]) for t, target in targets.items()}
        )
        publish_propensity(writer, snapshot, local)
        if value.result is not None:
            publish_value(writer, _shard_value(snapshot, lo, value))
        # A driver that failed has discarded the version, but a worker it lost contact with may still be
        # writing: what it writes then expires on its own. The driver persists the parts once all are in.
        pipe = client.pipeline(transaction=False)
        for key in writer.written:
            pipe.expire(key, settings.rebuild_lock_seconds)
        pipe.execute()
        return writer.written
    finally:
        client.close()
