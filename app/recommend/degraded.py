"""Recommendations when Redis is unreachable: popularity computed from Postgres, cached in-process.

Shops put recommendations on their pages; a Redis outage must degrade them to "popular lately", not
turn them into errors. The query aggregates the last 30 days of events per item, weighted by the same
type table and half-life as the live popularity sets (`app.eventlog.POPULARITY_WEIGHTS`), so the
fallback ranks as the normal path would. It runs once per category per minute and process: concurrent
misses of one category share one query (single flight), because the outage that sends every request
here is the worst moment to stampede Postgres. Filters and exclusions apply per request; a shopper's
purchases (or, with `exclude_seen`, everything they touched) are left out, as on the normal path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.eventlog import POPULARITY_WEIGHTS
from app.recommend import reasons
from app.recommend.schemas import Recommendations, RecommendedItem, Sources

TTL_SECONDS = 60.0
MAX_CACHED = 1000  # categories; the cache is cleared past it (category names come from requests)
_TYPES = list(POPULARITY_WEIGHTS)
_WEIGHTS = [POPULARITY_WEIGHTS[t] for t in _TYPES]
# Forward decay as on the live sets: w * 2^((ts - now) / half-life), so old events count less.
_POPULAR = text("""
SELECT i.item_id, i.title, i.categories, i.price, i.available,
       sum(w.weight * power(2.0, CAST(extract(epoch FROM e.ts - now()) AS float8) / :half_life)) AS weight
FROM events e
JOIN unnest(CAST(:types AS text[]), CAST(:weights AS float8[])) AS w(type, weight) ON w.type = e.type
JOIN items i ON i.item_id = e.item_id
WHERE e.ts > now() - interval '30 days' AND w.weight > 0 AND i.deleted_at IS NULL
  AND (CAST(:category AS text) IS NULL OR CAST(:category AS text) = ANY(i.categories))
GROUP BY i.item_id
ORDER BY weight DESC
LIMIT 500
""")
_EXCLUDED = text("""
SELECT DISTINCT item_id FROM events
WHERE user_id = :user_id AND item_id IS NOT NULL AND (CAST(:every AS boolean) OR type = 'purchase')
""")


class DegradedPopularity:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], half_life_days: float = 7.0) -> None:
        self._sessionmaker = sessionmaker
        self._half_life = half_life_days * 86400.0
        self._cache: dict[str | None, tuple[float, list[dict[str, Any]]]] = {}
        self._inflight: dict[str | None, asyncio.Task[list[dict[str, Any]]]] = {}

    async def _popular(self, category: str | None) -> list[dict[str, Any]]:
        cached = self._cache.get(category)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._inflight.get(category)
        if task is None:
            task = asyncio.create_task(self._load(category))
            self._inflight[category] = task
            task.add_done_callback(lambda done: self._forget(category, done))
        # shielded: a waiter that goes away (client disconnect) must not cancel the others' query
        return await asyncio.shield(task)

    def _forget(self, category: str | None, done: asyncio.Task[list[dict[str, Any]]]) -> None:
        if self._inflight.get(category) is done:
            del self._inflight[category]
        if not done.cancelled():
            done.exception()  # retrieved here too: a failure whose waiters all left is not "unretrieved"

    async def _load(self, category: str | None) -> list[dict[str, Any]]:
        params = {"category": category, "types": _TYPES, "weights": _WEIGHTS, "half_life": self._half_life}
        async with self._sessionmaker() as session:
            rows = (await session.execute(_POPULAR, params)).mappings().all()
        items = [dict(r) for r in rows]
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[category] = (time.monotonic() + TTL_SECONDS, items)
        return items

    async def _excluded(self, user_id: str, exclude_seen: bool) -> set[str]:
        """The shopper's purchases (every item they touched with `exclude_seen`): one indexed lookup."""
        async with self._sessionmaker() as session:
            rows = await session.execute(_EXCLUDED, {"user_id": user_id, "every": exclude_seen})
            return {str(r[0]) for r in rows}

    async def recommend(
        self, n: int, category: str | None, available_only: bool, exclude: set[str],
        min_price: float | None = None, max_price: float | None = None,
        user_id: str | None = None, exclude_seen: bool = False,
    ) -> Recommendations:
        popular = await self._popular(category)
        if user_id is not None:
            exclude = exclude | await self._excluded(user_id, exclude_seen)
        top = float(popular[0]["weight"]) if popular and popular[0]["weight"] else 1.0
        items: list[RecommendedItem] = []
        for row in popular:
            if len(items) >= n:
                break
            price = row["price"]
            if row["item_id"] in exclude or (available_only and not row["available"]):
                continue
            if (min_price is not None and (price is None or price < min_price)) or (
                max_price is not None and (price is None or price > max_price)
            ):
                continue
            pop = float(row["weight"]) / top
            items.append(RecommendedItem(
                item_id=row["item_id"], score=round(pop, 6),
                sources=Sources(cf=0.0, content=0.0, popularity=round(pop, 6)),
                reason=reasons.popular({"c": row["categories"]}, category), title=row["title"],
            ))
        strategy = "degraded_popularity"
        return Recommendations(recommendation_id=f"{strategy}.{uuid.uuid4().hex[:16]}", model_version=None,
                               strategy=strategy, items=items)
