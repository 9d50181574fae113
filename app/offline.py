"""The API's serving objects outside the API (the dispatcher, `shopmind campaign export`), built as
`create_app`'s lifespan builds them, so both recommend exactly as the routes do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import make_async_engine
from app.placements.serving import PlacementBook
from app.recommend.degraded import DegradedPopularity
from app.recommend.model_cache import ModelCache
from app.recommend.service import RecommendService
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys


@asynccontextmanager
async def serving_state(settings: Settings, pool_size: int = 2) -> AsyncIterator[tuple[SimpleNamespace, AsyncEngine]]:
    """(a namespace with what `app.state` offers the recommendation code, its engine); closed on exit."""
    assert settings.database_url and settings.redis_url
    engine = make_async_engine(settings.database_url, pool_size=pool_size)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)
    keys = Keys.of(settings)
    redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster)
    model_cache = ModelCache(redis, keys)
    state = SimpleNamespace(
        settings=settings, keys=keys, redis=redis, model_cache=model_cache,
        recommender=RecommendService(redis, keys, model_cache),
        placements=PlacementBook(sessionmaker, redis, keys),
        degraded_popularity=DegradedPopularity(sessionmaker, settings.popularity_half_life_days),
    )
    try:
        yield state, engine
    finally:
        await redis.aclose()
        await engine.dispose()
