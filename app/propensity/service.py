"""Propensity scores, audiences and lookalikes, read from the current model version in Redis."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from app.common.paging import ranked_page
from app.errors import BadRequest, ModelNotReady
from app.propensity.features_labels import Target
from app.propensity.schemas import (
    AudienceMember,
    AudienceOut,
    BatchOut,
    FactorOut,
    LookalikeOut,
    PropensityOut,
    Score,
)
from app.recommend.model_cache import ModelCache
from app.store.codec import text
from app.store.keys import Keys
from app.value import service as value_service
from app.value.schemas import ValueAudienceOut


def parse_target(text: str) -> str:
    try:
        return str(Target.parse(text))
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


async def _model(redis: aioredis.Redis, keys: Keys, target: str) -> tuple[str, float, float]:
    """(version, horizon_days, base_rate) of the live model for `target`, or ModelNotReady."""
    version_raw = await redis.get(keys.model_pointer())
    if version_raw is None:
        raise ModelNotReady(
            "No model yet: the first rebuild has not finished.", headers={"Retry-After": "30"}
        )
    version = text(version_raw)
    horizon, rates = await redis.hmget(
        keys.model(version, "meta"), ["propensity_horizon_days", "propensity_base_rates"]
    )
    base_rates: dict[str, float] = json.loads(rates) if rates else {}
    if target not in base_rates:
        raise ModelNotReady(
            f"No `{target}` model in version {version}: add it to SHOPMIND_PROPENSITY_TARGETS, or wait for "
            "enough history (see GET /v1/models).",
            headers={"Retry-After": "60"},
        )
    return version, float(horizon or 0), float(base_rates[target])


def _score(user_id: str, raw: bytes | str | None, base_rate: float) -> Score:
    if raw is None:
        return Score(user_id=user_id, probability=base_rate, percentile=None, tier="medium", scored=False)
    data: dict[str, Any] = json.loads(raw)
    return Score(
        user_id=user_id,
        probability=data["p"],
        percentile=data["pc"],
        tier=data["t"],
        top_factors=[FactorOut(**f) for f in data["f"]],
        scored=True,
    )


async def user_score(redis: aioredis.Redis, keys: Keys, user_id: str, target: str) -> PropensityOut:
    version, horizon, base_rate = await _model(redis, keys, target)
    raw = await redis.hget(keys.model(version, f"prop:{target}"), user_id)
    score = _score(user_id, raw, base_rate)
    return PropensityOut(**score.model_dump(), target=target, horizon_days=horizon, model_version=version)


async def batch_scores(redis: aioredis.Redis, keys: Keys, user_ids: list[str], target: str) -> BatchOut:
    version, horizon, base_rate = await _model(redis, keys, target)
    raws = await redis.hmget(keys.model(version, f"prop:{target}"), user_ids)
    return BatchOut(
        target=target,
        horizon_days=horizon,
        model_version=version,
        scores=[_score(u, r, base_rate) for u, r in zip(user_ids, raws, strict=True)],
    )


async def audience(
    redis: aioredis.Redis, keys: Keys, target: str, min_probability: float, limit: int, cursor: str | None
) -> AudienceOut:
    """Users ranked by probability, paginated by a cursor pinned to one model version (`common.paging`)."""
    version, horizon, _ = await _model(redis, keys, target)
    version, rows, next_cursor = await ranked_page(
        redis, keys, version, f"aud:{target}", limit, cursor, min_probability
    )
    users = [AudienceMember(user_id=m, probability=round(s, 6)) for m, s in rows]
    return AudienceOut(
        target=target, horizon_days=horizon, model_version=version, users=users, next_cursor=next_cursor
    )


async def value_audience(
    redis: aioredis.Redis, keys: Keys, min_probability: float, min_revenue: float, limit: int, cursor: str | None
) -> ValueAudienceOut:
    """`target=value`: customers ranked by expected revenue (min_revenue filters, not min_probability)."""
    if min_probability > 0:
        raise BadRequest("min_probability applies to propensity targets; for target=value pass min_revenue.")
    return await value_service.audience(redis, keys, min_revenue, limit, cursor)


async def lookalike(cache: ModelCache, seeds: list[str], n: int) -> LookalikeOut:
    """Users most similar to the seed audience: the seeds' lookalike lists, scores summed."""
    version, rows, ids = await cache.lookalike_rows(seeds)
    if version is None:
        raise ModelNotReady(
            "No model yet: the first rebuild has not finished.", headers={"Retry-After": "30"}
        )
    if not rows:
        return LookalikeOut(model_version=version, seeds_found=0, users=[])
    idx = np.concatenate([row[0] for row in rows])
    sc = np.concatenate([row[1] for row in rows])
    total = np.bincount(idx, weights=sc, minlength=len(ids))
    seed_set = set(seeds)
    order = np.argsort(-total, kind="stable")
    users: list[dict[str, Any]] = []
    for i in order:
        if total[i] <= 0 or len(users) >= n:
            break
        if ids[i] and ids[i] not in seed_set:
            users.append({"user_id": str(ids[i]), "score": round(float(total[i]), 6)})
    return LookalikeOut(model_version=version, seeds_found=len(rows), users=users)
