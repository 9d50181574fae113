"""Customer values and the value audience, read from the current model version in Redis."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from app.common.paging import ranked_page
from app.errors import ModelNotReady
from app.store.codec import text
from app.store.keys import Keys
from app.value.schemas import Value, ValueAudienceMember, ValueAudienceOut, ValueBatchOut

# the parts the worker's value stage writes (app.worker.stage_value; nothing here imports the worker)
VALUE_PART = "value"
VALUE_AUDIENCE = "aud:value"


async def _model(redis: aioredis.Redis, keys: Keys) -> tuple[str, float, dict[str, float]]:
    """(version, horizon_days, the new-customer mean) of the live value model, or ModelNotReady."""
    version_raw = await redis.get(keys.model_pointer())
    if version_raw is None:
        raise ModelNotReady("No model yet: the first rebuild has not finished.", headers={"Retry-After": "30"})
    version = text(version_raw)
    horizon, new_customer = await redis.hmget(keys.model(version, "meta"), ["value_horizon_days", "value_new_customer"])
    if horizon is None or new_customer is None:
        raise ModelNotReady(
            f"No customer-value model in version {version}: the shop has no purchases yet (see GET /v1/models).",
            headers={"Retry-After": "60"},
        )
    return version, float(horizon), json.loads(new_customer)


def _value(user_id: str, raw: bytes | str | None, version: str, horizon: float, new: dict[str, float]) -> Value:
    if raw is None:
        return Value(user_id=user_id, horizon_days=horizon, expected_purchases=new["expected_purchases"],
                     expected_revenue=new["expected_revenue"], p_alive=new["p_alive"], percentile=None,
                     scored=False, model_version=version)  # fmt: skip
    data: dict[str, Any] = json.loads(raw)
    return Value(user_id=user_id, horizon_days=horizon, expected_purchases=data["n"], expected_revenue=data["r"],
                 p_alive=data["a"], percentile=data["pc"], scored=True, model_version=version)  # fmt: skip


async def user_value(redis: aioredis.Redis, keys: Keys, user_id: str) -> Value:
    version, horizon, new = await _model(redis, keys)
    raw = await redis.hget(keys.model(version, VALUE_PART), user_id)
    return _value(user_id, raw, version, horizon, new)


async def batch_values(redis: aioredis.Redis, keys: Keys, user_ids: list[str]) -> ValueBatchOut:
    version, horizon, new = await _model(redis, keys)
    raws = await redis.hmget(keys.model(version, VALUE_PART), user_ids)  # one round trip for the batch
    values = [_value(u, r, version, horizon, new) for u, r in zip(user_ids, raws, strict=True)]
    return ValueBatchOut(horizon_days=horizon, model_version=version, values=values)


async def audience(
    redis: aioredis.Redis, keys: Keys, min_revenue: float, limit: int, cursor: str | None
) -> ValueAudienceOut:
    """Customers ranked by expected revenue, paged by a cursor pinned to one model version."""
    version, horizon, _ = await _model(redis, keys)
    version, rows, next_cursor = await ranked_page(redis, keys, version, VALUE_AUDIENCE, limit, cursor, min_revenue)
    users = [ValueAudienceMember(user_id=m, expected_revenue=round(s, 4)) for m, s in rows]
    return ValueAudienceOut(horizon_days=horizon, model_version=version, users=users, next_cursor=next_cursor)
