"""The dispatcher: fires due triggers into the outbox and sends the outbox. Never on a request's path.

`shopmind dispatcher` runs it as a process; `shopmind serve` runs it in a thread beside the worker.
Several may run at once (rows are claimed with SKIP LOCKED). It recommends through the same services
the API serves with, built here as the API's lifespan builds them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from types import SimpleNamespace

import httpx
import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import make_async_engine
from app.placements.serving import PlacementBook
from app.recommend.degraded import DegradedPopularity
from app.recommend.model_cache import ModelCache
from app.recommend.service import RecommendService
from app.settings import Settings
from app.store.client import make_async_redis
from app.store.keys import Keys
from app.triggers import firing
from app.webhooks import delivery

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 60.0
KEEP_DELIVERIES_DAYS = 30

_HOUSEKEEPING = (
    # browse counts whose last view is older than the trigger's window never reach their threshold
    """DELETE FROM trigger_pending p USING triggers t
       WHERE t.name = p.trigger_name AND t.kind = 'browse_abandoned' AND p.due_at IS NULL
         AND p.last_at < now() - coalesce((t.conditions->>'window_seconds')::int, 86400) * interval '1 second'""",
    f"""DELETE FROM webhook_deliveries WHERE status <> 'pending'
        AND created_at < now() - interval '{KEEP_DELIVERIES_DAYS} days'""",
    # a firing older than its trigger's cooldown no longer holds anything back
    """DELETE FROM trigger_fires f USING triggers t
       WHERE t.name = f.trigger_name AND f.fired_at < now() - t.cooldown_seconds * interval '1 second'""",
)


async def run(settings: Settings, stop: threading.Event) -> None:
    assert settings.database_url and settings.redis_url
    engine = make_async_engine(settings.database_url, pool_size=2)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)
    keys = Keys(settings.redis_prefix)
    serving_redis = make_async_redis(settings.redis_url)
    model_cache = ModelCache(serving_redis, keys)
    state = SimpleNamespace(
        settings=settings, keys=keys, redis=serving_redis, model_cache=model_cache,
        recommender=RecommendService(serving_redis, keys, model_cache),
        placements=PlacementBook(sessionmaker, serving_redis, keys),
        degraded_popularity=DegradedPopularity(sessionmaker, settings.popularity_half_life_days),
    )
    serving = firing.Serving(state, list(settings.propensity_targets))
    limits = httpx.Limits(max_connections=delivery.BATCH, max_keepalive_connections=10)
    housekeeping_at = time.monotonic()
    log.info("dispatcher.started", extra={"poll_seconds": settings.dispatcher_poll_seconds})
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, limits=limits,
                                 timeout=settings.webhook_timeout_seconds) as client:
        try:
            while not stop.is_set():
                try:
                    busy = await firing.fire_due(engine, serving) >= firing.BATCH
                    busy = await delivery.deliver_due(engine, client, settings) >= delivery.BATCH or busy
                    if time.monotonic() >= housekeeping_at:
                        housekeeping_at = time.monotonic() + HOUSEKEEPING_SECONDS
                        async with engine.begin() as conn:
                            for statement in _HOUSEKEEPING:
                                await conn.execute(text(statement))
                except (OperationalError, DBAPIError, redis.RedisError, OSError) as exc:
                    # Postgres or Redis away: nothing was claimed for good; try again after a pause
                    log.warning("dispatcher.unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
                    busy = False
                except Exception:  # a bug must not stop every later delivery; the batch rolled back
                    log.exception("dispatcher.failed")
                    busy = False
                if not busy:
                    await asyncio.sleep(settings.dispatcher_poll_seconds)
        finally:
            await serving_redis.aclose()
            await engine.dispose()


def run_forever(settings: Settings, stop: threading.Event) -> None:
    asyncio.run(run(settings, stop))


class BackgroundDispatcher:
    """The dispatcher inside `shopmind serve`: a daemon thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_forever, args=(settings, self._stop), name="shopmind-dispatcher", daemon=True
        )

    def start(self) -> BackgroundDispatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
