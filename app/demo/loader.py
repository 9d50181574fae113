"""Load the synthetic demo shop through the same service functions the API uses."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm

from app.catalog import service as catalog_service
from app.catalog.schemas import ItemWithId
from app.demo import experiment as demo_experiment
from app.demo.generator import generate_shop, iter_event_batches
from app.events import service as events_service
from app.events.models import Event
from app.placements import service as placements_service
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys
from app.users import service as users_service
from app.users.schemas import UserIn


async def _load(settings: Settings, n_users: int, n_items: int, seed: int, force: bool) -> dict[str, int]:
    assert settings.database_url and settings.redis_url
    from app.db import make_async_engine

    engine = make_async_engine(settings.database_url, pool_size=2)
    redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster)
    keys = Keys.of(settings)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)
        async with sessions() as session:
            existing = await session.scalar(select(func.count()).select_from(Event))
        if existing and not force:
            return {}
        shop = generate_shop(n_users=n_users, n_items=n_items, seed=seed)
        items = [ItemWithId.model_validate(i) for i in shop.items]
        async with sessions() as session, session.begin():
            await catalog_service.upsert_items(session, items)
            for user in shop.users:
                await users_service.upsert_user(session, user["user_id"], UserIn(attributes=user["attributes"]))
        await catalog_service.publish_items(redis, keys, items)
        totals = {"items": len(items), "users": len(shop.users), "events": 0}
        batches = list(iter_event_batches(shop, size=5000))
        for batch in tqdm(batches, desc="demo events", unit="batch", leave=False):
            raw: list[dict[str, Any]] = [{k: v for k, v in e.items() if v is not None} for e in batch]
            result = await events_service.ingest(engine, redis, keys, settings, raw)
            totals["events"] += result.accepted
        experiment_id, answers = await demo_experiment.create(
            sessions, [u["user_id"] for u in shop.users], shop.items, seed)
        totals["events"] += (await events_service.ingest(engine, redis, keys, settings, answers)).accepted
        await placements_service.announce(redis, keys)
        totals["experiment"] = experiment_id
        return totals
    finally:
        await redis.aclose()
        await engine.dispose()


def load_demo_if_empty(
    settings: Settings, force: bool = False, n_users: int = 2000, n_items: int = 300, seed: int = 7
) -> dict[str, int]:
    """Generate and ingest the demo shop unless events already exist (or `force`). Returns counts."""
    return asyncio.run(_load(settings, n_users, n_items, seed, force))
