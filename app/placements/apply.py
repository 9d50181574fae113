"""`?placement=NAME` on the recommendation routes: resolve, score a deeper pool, arrange by the rules.

The routes call these only when a placement is named, so a plain request runs none of this.
"""

from __future__ import annotations

from typing import Any

from app.placements.arrange import arrange, chosen_pool, response_pool
from app.placements.serving import PlacementBook, placed_query
from app.recommend import similar
from app.recommend.schemas import Recommendations
from app.recommend.service import Query, RecommendService
from app.store.batch import round_trip
from app.store.client import TIMEOUT_SECONDS


async def for_user(state: Any, name: str, user_id: str, q: Query, explicit: set[str]) -> Recommendations:
    book: PlacementBook = state.placements
    service: RecommendService = state.recommender
    plan = book.plan(name, ("user",), user_id)
    likely = plan.likely()
    # One round trip for the placement's reads and the recommender's first stage, planned from the
    # cached rules; read again only when the replies show the rules changed what must be read.
    reads = service.user_reads(user_id, placed_query(likely, q, explicit)[0]) if likely is not None else []
    replies = await round_trip(service.redis, plan.commands + reads, TIMEOUT_SECONDS)
    placed = await book.settle(plan, replies[: len(plan.commands)])
    pq, n = placed_query(placed, q, explicit)
    if (needed := service.user_reads(user_id, pq)) != reads:
        replies = await round_trip(service.redis, needed, TIMEOUT_SECONDS)
    else:
        replies = replies[len(plan.commands):]
    chosen = await service.choose_for_user(pq, replies)
    exclusions = state.keys.seen(user_id) if pq.exclude_seen else state.keys.purchased(user_id)
    return await arrange(service.redis, state.keys, state.model_cache, service.meta, placed, chosen_pool(chosen),
                         pq, n, exclusions_key=exclusions, version=chosen.version)


async def for_session(
    state: Any, name: str, item_ids: list[str], user_id: str | None, q: Query, explicit: set[str]
) -> Recommendations:
    book: PlacementBook = state.placements
    service: RecommendService = state.recommender
    placed = await book.resolve(name, ("session", "cart"), user_id)
    pq, n = placed_query(placed, q, explicit)
    chosen = await service.choose_for_session(item_ids, pq)
    return await arrange(service.redis, state.keys, state.model_cache, service.meta, placed, chosen_pool(chosen),
                         pq, n, excluded=set(item_ids), version=chosen.version)


async def for_item(
    state: Any, name: str, item_id: str, user_id: str | None, q: Query, explicit: set[str], mode: similar.Mode,
) -> Recommendations:
    book: PlacementBook = state.placements
    service: RecommendService = state.recommender
    placed = await book.resolve(name, ("item",), user_id)
    pq, n = placed_query(placed, q, explicit)
    recs = await similar.similar_items(state.redis, state.keys, state.model_cache, item_id, pq.n, mode,
                                       pq.available_only)
    return await arrange(service.redis, state.keys, state.model_cache, service.meta, placed, response_pool(recs),
                         pq, n, excluded={item_id}, version=recs.model_version)
