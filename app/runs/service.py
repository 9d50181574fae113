"""Model runs: what the API reports about rebuilds and how it asks the worker for one."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.runs.models import ModelRun
from app.store.codec import text
from app.store.keys import Keys


async def request_rebuild(session: AsyncSession, redis: aioredis.Redis, keys: Keys) -> ModelRun:
    """Record a queued run and hand its id to the worker; the worker picks it up within seconds."""
    run = ModelRun(status="queued", trigger="api")
    session.add(run)
    await session.flush()
    await session.commit()
    await redis.lpush(keys.rebuild_queue(), str(run.id))
    return run


async def recent_runs(session: AsyncSession, limit: int = 20) -> list[ModelRun]:
    rows = await session.scalars(select(ModelRun).order_by(ModelRun.id.desc()).limit(limit))
    return list(rows)


async def current_version(redis: aioredis.Redis, keys: Keys) -> tuple[str | None, dict[str, Any]]:
    version = await redis.get(keys.model_pointer())
    if version is None:
        return None, {}
    meta = await redis.hgetall(keys.model(text(version), "meta"))
    return text(version), {text(k): text(v) for k, v in meta.items()}
