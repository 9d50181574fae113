"""Recommendations when Redis is unreachable: popularity computed from Postgres, cached in-process.

Shops put recommendations on their pages; a Redis outage must degrade them to "popular lately", not
turn them into errors. The query aggregates the last 30 days of events per item (weighted by type),
once per category per minute and process; filters and exclusions apply per request.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.recommend import reasons
from app.recommend.schemas import Recommendations, RecommendedItem, Sources

TTL_SECONDS = 60.0
_POPULAR = text("""
SELECT i.item_id, i.title, i.categories, i.price, i.available,
       sum(CASE e.type WHEN 'purchase' THEN 5 WHEN 'add_to_cart' THEN 3 WHEN 'view' THEN 1
                       WHEN 'click' THEN 1 ELSE 0.5 END) AS weight
FROM events e JOIN items i ON i.item_id = e.item_id
WHERE e.ts > now() - interval '30 days' AND i.deleted_at IS NULL
  AND (CAST(:category AS text) IS NULL OR CAST(:category AS text) = ANY(i.categories))
GROUP BY i.item_id
ORDER BY weight DESC
LIMIT 500
""")


class DegradedPopularity:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._cache: dict[str | None, tuple[float, list[dict[str, Any]]]] = {}

    async def _popular(self, category: str | None) -> list[dict[str, Any]]:
        cached = self._cache.get(category)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._sessionmaker() as session:
            rows = (await session.execute(_POPULAR, {"category": category})).mappings().all()
        items = [dict(r) for r in rows]
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[category] = (time.monotonic() + TTL_SECONDS, items)
        return items

    async def recommend(
        self, n: int, category: str | None, available_only: bool, exclude: set[str],
        min_price: float | None = None, max_price: float | None = None,
    ) -> Recommendations:
        popular = await self._popular(category)
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
