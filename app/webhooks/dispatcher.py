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

import httpx
import redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.offline import serving_state
from app.settings import Settings
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
    async with serving_state(settings) as (state, engine):
        serving = firing.Serving(state, list(settings.propensity_targets))
        limits = httpx.Limits(max_connections=delivery.BATCH, max_keepalive_connections=10)
        log.info("dispatcher.started", extra={"poll_seconds": settings.dispatcher_poll_seconds})
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, limits=limits,
                                     timeout=settings.webhook_timeout_seconds) as client:
            await _loop(settings, stop, engine, serving, client)


async def _loop(
    settings: Settings, stop: threading.Event, engine: AsyncEngine, serving: firing.Serving, client: httpx.AsyncClient
) -> None:
    housekeeping_at = time.monotonic()
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
