from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from app.auth.deps import require
from app.common.types import ID_PATTERN
from app.errors import BadRequest
from app.http import NOT_FOUND
from app.propensity import item_audience, service
from app.propensity.schemas import (
    AudienceOut,
    BatchIn,
    BatchOut,
    ItemAudienceOut,
    LookalikeIn,
    LookalikeOut,
    PropensityOut,
    ValueAudienceOut,
)

router = APIRouter(prefix="/v1", tags=["propensity"], dependencies=[Depends(require("read"))])
IdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]
TargetQuery = Annotated[str, Query(max_length=300, description="purchase, churn or purchase:<category>")]
AudienceTarget = Annotated[
    str, Query(max_length=300, description="purchase, churn, purchase:<category>, or value (by expected revenue)")
]


@router.get("/users/{user_id}/propensity", response_model=PropensityOut)
async def user_propensity(
    user_id: IdPath, request: Request, target: TargetQuery = "purchase"
) -> PropensityOut:
    """Calibrated probability that the shopper does `target` within the horizon, with top factors."""
    state = request.app.state
    return await service.user_score(state.redis, state.keys, user_id, service.parse_target(target))


@router.post("/propensity", response_model=BatchOut)
async def batch_propensity(body: BatchIn, request: Request) -> BatchOut:
    """Scores for up to 10,000 shoppers; unknown ones get the base rate with `scored: false`."""
    state = request.app.state
    return await service.batch_scores(
        state.redis, state.keys, body.user_ids, service.parse_target(body.target)
    )


@router.get("/audiences", response_model=AudienceOut | ValueAudienceOut)
async def audiences(
    request: Request,
    target: AudienceTarget = "purchase",
    min_probability: Annotated[float, Query(ge=0, le=1)] = 0.0,
    min_revenue: Annotated[float, Query(ge=0, description="target=value only: expected revenue at least")] = 0.0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> AudienceOut | ValueAudienceOut:
    """Shoppers most likely to act (or worth most, `target=value`), ranked, for campaign targeting;
    page with `next_cursor`."""
    state = request.app.state
    if target.strip() == "value":
        return await service.value_audience(state.redis, state.keys, min_probability, min_revenue, limit, cursor)
    if min_revenue > 0:
        raise BadRequest("min_revenue applies to target=value only.")
    return await service.audience(
        state.redis, state.keys, service.parse_target(target), min_probability, limit, cursor
    )


@router.get("/items/{item_id}/audience", response_model=ItemAudienceOut, responses=NOT_FOUND)
async def item_audience_route(
    item_id: IdPath,
    request: Request,
    n: Annotated[int, Query(ge=1, le=10_000, description="Shoppers per page.")] = 100,
    min_score: Annotated[float, Query(ge=0, le=1, description="Affinity at least (1 = the item's best).")] = 0.0,
    include_buyers: Annotated[bool, Query(description="Keep shoppers who bought it already.")] = False,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> ItemAudienceOut:
    """Who will buy this: shoppers ranked by predicted affinity for the item (their histories against
    its CF neighbours, content for a new item), buyers left out unless asked for; page with
    `next_cursor`. Ranked at each rebuild; erasures and purchases since apply at once."""
    state = request.app.state
    return await item_audience.item_audience(
        state.redis, state.keys, state.model_cache, item_id, n, min_score, include_buyers, cursor
    )


@router.post("/audiences/lookalike", response_model=LookalikeOut)
async def lookalike(body: LookalikeIn, request: Request) -> LookalikeOut:
    """Shoppers who behave most like the seed users (from the user-user CF)."""
    state = request.app.state
    return await service.lookalike(state.model_cache, body.user_ids, body.n)
