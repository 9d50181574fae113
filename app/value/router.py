from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from app.auth.deps import require
from app.common.types import ID_PATTERN
from app.value import service
from app.value.schemas import Value, ValueBatchIn, ValueBatchOut

router = APIRouter(prefix="/v1", tags=["value"], dependencies=[Depends(require("read"))])
IdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]


@router.get("/users/{user_id}/value", response_model=Value)
async def user_value(user_id: IdPath, request: Request) -> Value:
    """Expected purchases, revenue and p_alive over SHOPMIND_VALUE_HORIZON_DAYS; unknown shoppers get
    the mean of new customers with `scored: false`."""
    state = request.app.state
    return await service.user_value(state.redis, state.keys, user_id)


@router.post("/value", response_model=ValueBatchOut)
async def batch_values(body: ValueBatchIn, request: Request) -> ValueBatchOut:
    """Values of up to 10,000 shoppers, in the order asked."""
    state = request.app.state
    return await service.batch_values(state.redis, state.keys, body.user_ids)
