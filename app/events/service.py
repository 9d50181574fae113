"""Batch ingest: check each event on its own, store the batch in one transaction, then update Redis.

Postgres commits before the real-time Redis update and before the answer: whatever we acknowledge is
durable. Whatever its size, a batch is a few statements — a counter read, the inserts of users and
items this process has not stored before, one COPY (`app.events.store`) — and the real-time update
one server-side script call (`app.events.realtime`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.events import realtime
from app.events.schemas import IngestResult
from app.events.store import write_events
from app.events.validate import check_batch
from app.observability import metrics
from app.settings import Settings
from app.store.keys import Keys
from app.triggers import active as active_triggers

_TYPE = itemgetter(3)


async def ingest(
    engine: AsyncEngine,
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    raw: list[Any],
    *,
    validated: bool = False,
) -> IngestResult:
    """`validated`: every event passed `EventIn` already, only the cross-field rules remain to check."""
    batch = check_batch(raw, settings, datetime.now(UTC), validated=validated)
    duplicate_ids = list(batch.repeated_ids)
    stored, created_items = [], []
    if batch.rows:
        written = await write_events(engine, batch.rows, await active_triggers.kinds(engine))
        stored, created_items = written.rows, written.created_items
        if len(stored) < len(batch.rows):
            new = {r.event_id for r in stored}
            duplicate_ids += [r.event_id for r in batch.rows if r.event_id not in new]

    updated = await realtime.apply_events(redis, keys, settings, stored, created_items)
    metrics.observe_ingest(Counter(map(_TYPE, stored)), len(duplicate_ids), len(batch.rejected))
    if not updated:
        metrics.realtime_skipped(len(stored))
    return IngestResult(
        accepted=len(stored),
        duplicates=len(duplicate_ids),
        rejected=len(batch.rejected),
        errors=batch.rejected,
        duplicate_event_ids=duplicate_ids,
        realtime_updated=updated,
    )
