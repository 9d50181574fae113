"""`?placement=NAME` on the recommendation routes: resolve, score a deeper pool, arrange by the rules.

The routes call these only when a placement is named, so a plain request runs none of this.
"""

from __future__ import annotations

from typing import Any

from app.placements.serving import PlacementBook, arrange, placed_query
from app.recommend import similar
from app.recommend.schemas import Recommendations
from app.recommend.service import Query, RecommendService


async def for_user(state: Any, name: str, user_id: str, q: Query, explicit: set[str]) -> Recommendations:
    book: PlacementBook = state.placements
    service: RecommendService = state.recommender
    placed = await book.resolve(name, ("user",), user_id)
    pq, n = placed_query(placed, q, explicit)
    recs = await service.for_user(user_id, pq)
    exclusions = state.keys.seen(user_id) if pq.exclude_seen else state.keys.purchased(user_id)
    return await arrange(service.redis, state.keys, state.model_cache, service.meta, placed, recs, pq, n,
                         exclusions_key=exclusions)


async def for_session(
    state: Any, name: str, item_ids: list[str], user_id: str | None, q: Query, explicit: set[str]
) -> Recommendations:
    book: PlacementBook = state.placements
    service: RecommendService = state.recommender
    placed = await book.resolve(name, ("session", "cart"), user_id)
    pq, n = placed_query(placed, q, explicit)
    recs = await service.for_session(item_ids, pq)
    return await arrange(service.redis, state.keys, state.model_cache, service.meta, placed, recs, pq, n,
                         excluded=set(item_ids))


async def for_item(
    state: Any, name: str, item_id: str, user_id: str | None, q: Query, explicit: set[str], mode: similar.Mode,
) -> Recommendations:
    book: PlacementBook = state.placements
    service: RecommendService = state.recommender
    placed = await book.resolve(name, ("item",), user_id)
    pq, n = placed_query(placed, q, explicit)
    recs = await similar.similar_items(state.redis, state.keys, state.model_cache, item_id, pq.n, mode,
                                       pq.available_only)
    return await arrange(service.redis, state.keys, state.model_cache, service.meta, placed, recs, pq, n,
                         excluded={item_id})
