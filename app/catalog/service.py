"""Catalog writes go to Postgres (source of truth) and to the Redis item-metadata hash serving reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import Item
from app.catalog.schemas import ItemOut, ItemWithId
from app.errors import ItemNotFound
from app.recommend import live
from app.recommend.model_cache import ModelCache
from app.store.codec import item_meta_json, new_meta_epoch
from app.store.keys import Keys
from app.triggers import arming

_CHUNK = 1000  # rows per INSERT; keeps bind parameters far below the driver's limit


async def upsert_items(session: AsyncSession, items: Sequence[ItemWithId]) -> None:
    now = datetime.now(UTC)
    # The last occurrence of an id in one batch wins, as if the items were PUT in order.
    latest = {item.item_id: item for item in items}
    rows: list[dict[str, Any]] = [
        {**item.model_dump(), "updated_at": now, "deleted_at": None} for item in latest.values()
    ]
    rows.sort(key=lambda r: r["item_id"])
    # One statement compiled once, sent as multi-row batches (executemany / insertmanyvalues):
    # building `.values(<1000 rows>)` literally cost ~1.5 s of SQL compilation per chunk.
    stmt = insert(Item)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Item.item_id],
        set_={col: getattr(stmt.excluded, col) for col in rows[0] if col != "item_id"},
    )
    for start in range(0, len(rows), _CHUNK):
        await session.execute(stmt, rows[start : start + _CHUNK])
    restocked = [r["item_id"] for r in rows if r["available"]]
    if restocked:  # shoppers who wanted one of them while it was out of stock (back_in_stock triggers)
        await session.execute(text(arming.RESTOCK), {"item_ids": restocked})


async def publish_items(
    redis: aioredis.Redis, keys: Keys, items: Sequence[ItemWithId], cache: ModelCache | None = None
) -> None:
    """Make upserted items visible to serving at once: metadata (filters, reasons) and, with the
    serving model's cache, content neighbours (CF neighbours arrive with the next rebuild)."""
    by_id = {i.item_id: i for i in items}
    pipe = redis.pipeline(transaction=False)
    for bucket, ids in keys.by_bucket(by_id).items():
        mapping = {
            item_id: item_meta_json(i.categories, i.price, i.available, i.title, i.brand, i.tags, i.attributes)
            for item_id in ids
            for i in (by_id[item_id],)
        }
        pipe.hset(keys.item_meta(bucket), mapping=mapping)  # type: ignore[arg-type]
        categories = {c for item_id in ids for c in by_id[item_id].categories}
        if categories:
            pipe.sadd(keys.popularity_categories(bucket), *categories)
    pipe.set(keys.item_meta_epoch(), new_meta_epoch())
    await pipe.execute()
    if cache is not None:
        await live.place_items(redis, keys, cache, [i.model_dump() for i in items])


async def get_item(session: AsyncSession, item_id: str) -> ItemOut:
    item = await session.get(Item, item_id)
    if item is None or item.deleted_at is not None:
        raise ItemNotFound(f"No item `{item_id}`.")
    return ItemOut.model_validate(item, from_attributes=True)


async def delete_item(session: AsyncSession, redis: aioredis.Redis, keys: Keys, item_id: str) -> None:
    """Hide the item from every list at once; its events stay for history and models."""
    result = await session.execute(
        update(Item)
        .where(Item.item_id == item_id, Item.deleted_at.is_(None))
        .values(deleted_at=datetime.now(UTC), available=False)
        .returning(Item.item_id)
    )
    if result.first() is None:
        raise ItemNotFound(f"No item `{item_id}`.")
    await session.flush()
    await unpublish_item(redis, keys, item_id)


async def unpublish_item(redis: aioredis.Redis, keys: Keys, item_id: str) -> None:
    """Remove the item from serving: no list shows it from the next request on."""
    pipe = redis.pipeline(transaction=False)
    pipe.hdel(keys.item_meta_of(item_id), item_id)
    pipe.set(keys.item_meta_epoch(), new_meta_epoch())
    await pipe.execute()


async def item_exists(session: AsyncSession, item_id: str) -> bool:
    found = await session.execute(
        select(Item.item_id).where(Item.item_id == item_id, Item.deleted_at.is_(None))
    )
    return found.first() is not None
