from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from redis.exceptions import RedisError

from app.auth.deps import require
from app.common.types import ID_PATTERN
from app.errors import BadRequest
from app.fallback import note_redis_fallback
from app.http import NOT_FOUND, PLACEMENT_NOT_FOUND, query_model, query_parameters
from app.placements import apply as placements
from app.recommend import similar
from app.recommend.degraded import DegradedPopularity
from app.recommend.schemas import Recommendations, SessionIn, SimilarUsers, UserRecommendationsQuery
from app.recommend.service import Query as RecQuery
from app.recommend.service import RecommendService

router = APIRouter(prefix="/v1", tags=["recommendations"], dependencies=[Depends(require("read"))])
IdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]
N = Annotated[int, Query(ge=1, le=100, description="How many items.")]
PlacementName = Annotated[str | None, Query(min_length=1, max_length=64, description="A placement's rules.")]


async def _degraded(
    request: Request, q: RecQuery, exclude: set[str], path: str, user_id: str | None = None
) -> Recommendations:
    """Redis is unreachable: answer from Postgres popularity rather than fail the shop's page."""
    note_redis_fallback(request.app.state, path)
    fallback: DegradedPopularity = request.app.state.degraded_popularity
    return await fallback.recommend(q.n, q.category, q.available_only, exclude, q.min_price, q.max_price,
                                    user_id=user_id, exclude_seen=q.exclude_seen)


def _service(request: Request) -> RecommendService:
    service: RecommendService = request.app.state.recommender
    return service


@router.get("/users/{user_id}/recommendations", response_model=Recommendations, responses=PLACEMENT_NOT_FOUND,
            openapi_extra=query_parameters(UserRecommendationsQuery))
async def recommendations(user_id: IdPath, request: Request) -> Response:
    """Hybrid recommendations over the shopper's live history (an event posted a moment ago counts).

    Cold shoppers get popularity (flagged in `strategy`); never an empty list while eligible items exist.
    """
    params = query_model(UserRecommendationsQuery, request)
    if params.min_price is not None and params.max_price is not None and params.min_price > params.max_price:
        raise BadRequest("min_price is above max_price.")
    q = RecQuery(n=params.n, category=params.category, available_only=params.available_only,
                 exclude_seen=params.exclude_seen, alpha=params.alpha, min_price=params.min_price,
                 max_price=params.max_price)
    try:
        if params.placement is None:
            recs = await _service(request).for_user(user_id, q)
        else:
            recs = await placements.for_user(request.app.state, params.placement, user_id, q,
                                             set(request.query_params))
    except (RedisError, OSError):
        recs = await _degraded(request, q, set(), "recommendations.user", user_id)
    return _json(recs)


def _json(recs: Recommendations) -> Response:
    """The answer serialised as is: the service has validated it already, so FastAPI's second pass
    against `response_model` (kept for the OpenAPI schema) would only cost time."""
    return Response(recs.__pydantic_serializer__.to_json(recs), media_type="application/json")


@router.post("/recommendations/session", response_model=Recommendations, responses=PLACEMENT_NOT_FOUND)
async def session_recommendations(
    body: SessionIn, request: Request, placement: PlacementName = None
) -> Recommendations:
    """Recommendations for an anonymous basket or browsing session (items newest first)."""
    q = RecQuery(n=body.n, category=body.category, available_only=body.available_only)
    try:
        if placement is not None:
            return await placements.for_session(request.app.state, placement, body.item_ids, body.user_id, q,
                                                body.model_fields_set)
        return await _service(request).for_session(body.item_ids, q)
    except (RedisError, OSError):
        return await _degraded(request, q, set(body.item_ids), "recommendations.session")


@router.get("/items/{item_id}/similar", response_model=Recommendations, responses=NOT_FOUND)
async def similar_items(
    item_id: IdPath,
    request: Request,
    n: N = 10,
    mode: Annotated[similar.Mode, Query(description="hybrid, cf (co-behaviour) or content (text, tags)")]
    = "hybrid",
    available_only: bool = True,
    placement: PlacementName = None,
    user_id: Annotated[str | None, Query(min_length=1, max_length=256, pattern=ID_PATTERN,
                                         description="The shopper, if known (placement rotation).")] = None,
) -> Recommendations:
    """Items like this one. A new item has content neighbours at once and CF ones after the next rebuild."""
    state = request.app.state
    if placement is not None:
        q = RecQuery(n=n, available_only=available_only)
        return await placements.for_item(state, placement, item_id, user_id, q, set(request.query_params), mode)
    return await similar.similar_items(state.redis, state.keys, state.model_cache, item_id, n, mode,
                                       available_only)


@router.get("/users/{user_id}/similar", response_model=SimilarUsers)
async def similar_users(user_id: IdPath, request: Request, n: N = 10) -> SimilarUsers:
    """Nearest shoppers by behaviour (Pearson over co-interacted items, significance-weighted)."""
    state = request.app.state
    return await similar.similar_users(state.model_cache, user_id, n)
