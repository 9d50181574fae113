"""Placement storage: Postgres rows, validated against the catalog, announced to serving by an epoch."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import Item
from app.errors import PlacementNotFound, ValidationFailed
from app.placements.models import Placement
from app.placements.schemas import PlacementIn, PlacementOut
from app.store.codec import new_meta_epoch
from app.store.keys import Keys


def stored(body: PlacementIn) -> dict[str, Any]:
    """The JSON kept in `placements.spec` (aliases: `lambda`, as clients write it)."""
    return body.model_dump(mode="json", by_alias=True)


def _out(row: Placement) -> PlacementOut:
    return PlacementOut.model_validate({**row.spec, "name": row.name, "updated_at": row.updated_at})


async def check_items(session: AsyncSession, body: PlacementIn) -> None:
    """422 naming every pinned or excluded item the catalog does not have (or has deleted): a pin on a
    misspelt id would otherwise never show, and nobody would know why."""
    wanted: list[tuple[str | int, ...]] = [("pins", k, "item_id", p.item_id) for k, p in enumerate(body.pins)]
    wanted += [("filters", "exclude_items", k, i) for k, i in enumerate(body.filters.exclude_items)]
    if not wanted:
        return
    ids = list({w[-1] for w in wanted})
    rows = await session.execute(
        select(Item.item_id).where(Item.item_id.in_(ids), Item.deleted_at.is_(None))
    )
    known = set(rows.scalars())
    errors = [
        {"loc": ["body", *loc[:-1]], "msg": f"Unknown or deleted item `{loc[-1]}`.", "type": "unknown_item"}
        for loc in wanted if loc[-1] not in known
    ]
    if errors:
        raise ValidationFailed(errors)


async def put_placement(session: AsyncSession, name: str, body: PlacementIn) -> PlacementOut:
    await check_items(session, body)
    stmt = insert(Placement).values(name=name, spec=stored(body))
    upsert = stmt.on_conflict_do_update(
        index_elements=[Placement.name], set_={"spec": stmt.excluded.spec, "updated_at": func.now()}
    ).returning(Placement)
    row = (await session.execute(upsert)).scalar_one()
    return _out(row)


async def get_placement(session: AsyncSession, name: str) -> PlacementOut:
    row = await session.get(Placement, name)
    if row is None:
        raise PlacementNotFound(f"No placement `{name}`.")
    return _out(row)


async def list_placements(session: AsyncSession) -> list[PlacementOut]:
    rows = await session.execute(select(Placement).order_by(Placement.name))
    return [_out(r) for r in rows.scalars()]


async def delete_placement(session: AsyncSession, name: str) -> None:
    deleted = await session.execute(delete(Placement).where(Placement.name == name).returning(Placement.name))
    if deleted.first() is None:
        raise PlacementNotFound(f"No placement `{name}`.")


async def load_all(session: AsyncSession) -> dict[str, PlacementIn]:
    """Every placement's rules by name, for the serving cache."""
    rows = await session.execute(select(Placement.name, Placement.spec))
    return {name: PlacementIn.model_validate(spec) for name, spec in rows.tuples()}


async def announce(redis: aioredis.Redis, keys: Keys) -> None:
    """After a committed write: a fresh epoch makes every API process reload at its next request."""
    await redis.set(keys.placements_epoch(), new_meta_epoch())
