from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from redis.exceptions import RedisError

from app.auth.deps import require
from app.catalog import service
from app.catalog.schemas import (
    MAX_ITEMS_PER_BATCH,
    ItemBatchIn,
    ItemBatchOut,
    ItemDeleted,
    ItemIn,
    ItemOut,
    ItemWithId,
)
from app.common.types import ID_PATTERN
from app.db import SessionDep
from app.errors import PayloadTooLarge
from app.fallback import note_skipped_write
from app.http import NOT_FOUND

# Writes commit before touching Redis, so serving never sees an item that Postgres does not have.
router = APIRouter(prefix="/v1/items", tags=["catalog"])
ItemIdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]


async def _publish(request: Request, items: list[ItemWithId], path: str) -> None:
    """Postgres (committed) is the truth: a Redis outage skips the serving update, never the write."""
    try:
        state = request.app.state
        await service.publish_items(state.redis, state.keys, items, state.model_cache)
    except (RedisError, OSError):
        await note_skipped_write(request.app.state, path)


@router.put("/{item_id}", response_model=ItemOut, dependencies=[Depends(require("ingest"))])
async def put_item(
    item_id: ItemIdPath, body: ItemIn, request: Request, session: SessionDep
) -> ItemOut:
    """Create or replace an item. A deleted item put again becomes visible again."""
    item = ItemWithId(item_id=item_id, **body.model_dump())
    await service.upsert_items(session, [item])
    await session.commit()
    await _publish(request, [item], "items.publish")
    return await service.get_item(session, item_id)


@router.post("", response_model=ItemBatchOut, dependencies=[Depends(require("ingest"))])
async def post_items(
    body: ItemBatchIn, request: Request, session: SessionDep
) -> ItemBatchOut:
    """Create or replace up to 10,000 items in one call."""
    if len(body.items) > MAX_ITEMS_PER_BATCH:
        raise PayloadTooLarge(f"{len(body.items)} items in one call; the limit is {MAX_ITEMS_PER_BATCH}.")
    await service.upsert_items(session, body.items)
    await session.commit()
    await _publish(request, body.items, "items.publish")
    return ItemBatchOut(upserted=len({i.item_id for i in body.items}))


@router.get(
    "/{item_id}", response_model=ItemOut, dependencies=[Depends(require("read"))], responses=NOT_FOUND
)
async def get_item(item_id: ItemIdPath, session: SessionDep) -> ItemOut:
    return await service.get_item(session, item_id)


@router.delete(
    "/{item_id}", response_model=ItemDeleted, dependencies=[Depends(require("ingest"))], responses=NOT_FOUND
)
async def delete_item(
    item_id: ItemIdPath, request: Request, session: SessionDep
) -> ItemDeleted:
    """Hide the item from all recommendations at once; its history is kept."""
    await service.delete_item(session, request.app.state.redis, request.app.state.keys, item_id)
    return ItemDeleted(item_id=item_id)
