"""Bookkeeping for requests served without their Redis side effect (Redis unreachable).

Postgres is the source of truth, so ingest and catalog writes still succeed when Redis is down; the
real-time state catches up at the next rebuild / re-hydration. Each such request is counted twice: in
`app.state.redis_fallbacks` (path -> count, in-process, no Prometheus needed) and in the Prometheus
counter `shopmind_redis_fallbacks{path}`. A skipped *write* is also recorded in Postgres
(`redis_skips`) before the answer: the next rebuild repairs Redis from Postgres, even when Redis came
back with its data (nothing else would tell that it missed writes).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observability import metrics

log = logging.getLogger(__name__)


def note_redis_fallback(state: Any, path: str) -> None:
    """Count one request that skipped its Redis update. `path`: a short fixed name, never an id."""
    counts: dict[str, int] = getattr(state, "redis_fallbacks", None) or {}
    counts[path] = counts.get(path, 0) + 1
    state.redis_fallbacks = counts
    log.warning("redis.fallback", extra={"path": path})
    metrics.redis_fallback(path)


async def record_skipped_write(engine: AsyncEngine, path: str) -> None:
    """Durably note that Redis missed a write Postgres has: the next rebuild re-hydrates from Postgres.

    An insert (no row shared by concurrent requests): an outage under load must not queue every write
    behind one row lock.
    """
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO redis_skips (path) VALUES (:path)"), {"path": path})


async def note_skipped_write(state: Any, path: str) -> None:
    """`note_redis_fallback` for a write: counted, and recorded for the repair."""
    note_redis_fallback(state, path)
    await record_skipped_write(state.engine, path)
