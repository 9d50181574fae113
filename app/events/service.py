"""Batch ingest: validate each event on its own, store the batch in one transaction, then update Redis.

The batch goes to Postgres as three multi-row statements (users, items, events) built from unnest()
over arrays, so a 1,000-event call is three round trips, not a thousand. Postgres commits before the
real-time Redis update and before the answer: whatever we acknowledge is durable.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.events import realtime
from app.events.schemas import EventIn, IngestResult, RejectedEvent
from app.observability import metrics
from app.settings import Settings
from app.store.keys import Keys

_batch_adapter = TypeAdapter(list[EventIn])

_UPSERT_USERS = "INSERT INTO users (user_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING"
_UPSERT_ITEMS = """
WITH created AS (
    INSERT INTO items (item_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING
    RETURNING item_id, categories
)
SELECT item_id, categories, true AS created FROM created
UNION ALL
SELECT item_id, categories, false FROM items WHERE item_id = ANY(%s::text[]) AND deleted_at IS NULL
"""
_INSERT_EVENTS = """
INSERT INTO events (event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id,
                    properties)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[],
                     %s::timestamptz[], %s::text[], %s::text[], %s::text[]::jsonb[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    user_id: str
    item_id: str | None
    type: str
    ts: float
    value: float | None
    recommendation_id: str | None


def _readable(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__")
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def validate_events(
    raw: list[dict[str, Any]], settings: Settings, now: datetime
) -> tuple[list[tuple[int, EventIn]], list[RejectedEvent]]:
    """Split a raw batch into valid events (with their positions) and rejections with reasons."""
    try:
        parsed: list[EventIn | None] = list(_batch_adapter.validate_python(raw))
    except ValidationError:
        # Slow path only when something is wrong: find exactly which events and why.
        parsed = []
        rejected_early: dict[int, str] = {}
        for index, event in enumerate(raw):
            try:
                parsed.append(EventIn.model_validate(event))
            except ValidationError as exc:
                parsed.append(None)
                rejected_early[index] = _readable(exc)
    else:
        rejected_early = {}

    valid: list[tuple[int, EventIn]] = []
    rejected: list[RejectedEvent] = []
    latest = now.timestamp() + settings.max_future_seconds
    for index, event in enumerate(parsed):
        if event is None:
            raw_id = raw[index].get("event_id") if isinstance(raw[index], dict) else None
            rejected.append(
                RejectedEvent(
                    index=index, event_id=raw_id if isinstance(raw_id, str) else None,
                    error=rejected_early[index],
                )
            )
            continue
        if event.timestamp is not None:
            ts = event.timestamp if event.timestamp.tzinfo else event.timestamp.replace(tzinfo=UTC)
            if ts.timestamp() > latest:
                rejected.append(RejectedEvent(index=index, event_id=event.event_id,
                                              error="timestamp: more than 5 minutes in the future"))
                continue
            if ts.timestamp() < settings.min_timestamp:
                rejected.append(RejectedEvent(index=index, event_id=event.event_id,
                                              error="timestamp: before 2000-01-01"))
                continue
            event.timestamp = ts
        valid.append((index, event))
    return valid, rejected


async def ingest(
    engine: AsyncEngine,
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    raw: list[dict[str, Any]],
) -> IngestResult:
    now = datetime.now(UTC)
    valid, rejected = validate_events(raw, settings, now)

    # An event id repeated inside one batch is a duplicate of its first occurrence.
    rows: dict[str, EventIn] = {}
    duplicate_ids: list[str] = []
    for _, event in valid:
        event_id = event.event_id or uuid.uuid4().hex
        if event_id in rows:
            duplicate_ids.append(event_id)
        else:
            rows[event_id] = event

    stored: list[StoredEvent] = []
    created_items: set[str] = set()
    categories: dict[str, list[str]] = {}
    if rows:
        ordered = sorted(rows.items())  # one lock order for all writers: no deadlocks between batches
        user_ids = sorted({e.user_id for _, e in ordered})
        item_ids = sorted({e.item_id for _, e in ordered if e.item_id is not None})
        async with engine.begin() as conn:
            await conn.exec_driver_sql(_UPSERT_USERS, (user_ids,))
            if item_ids:
                result = await conn.exec_driver_sql(_UPSERT_ITEMS, (item_ids, item_ids))
                for item_id, cats, created in result.all():
                    categories[item_id] = list(cats or [])
                    if created:
                        created_items.add(item_id)
            result = await conn.exec_driver_sql(
                _INSERT_EVENTS,
                (
                    [k for k, _ in ordered],
                    [e.user_id for _, e in ordered],
                    [e.item_id for _, e in ordered],
                    [e.type for _, e in ordered],
                    [e.value for _, e in ordered],
                    [e.price for _, e in ordered],
                    [e.timestamp or now for _, e in ordered],
                    [e.session_id for _, e in ordered],
                    [e.recommendation_id for _, e in ordered],
                    [None if e.properties is None else json.dumps(e.properties) for _, e in ordered],
                ),
            )
            inserted = {r[0] for r in result.all()}
        for event_id, e in ordered:
            if event_id not in inserted:
                duplicate_ids.append(event_id)
                continue
            stored.append(
                StoredEvent(
                    event_id=event_id, user_id=e.user_id, item_id=e.item_id, type=e.type,
                    ts=(e.timestamp or now).timestamp(), value=e.value,
                    recommendation_id=e.recommendation_id,
                )
            )

    updated = await realtime.apply_events(redis, keys, settings, stored, categories, created_items)
    metrics.observe_ingest(Counter(e.type for e in stored), len(duplicate_ids), len(rejected))
    if not updated:
        metrics.realtime_skipped(len(stored))
    return IngestResult(
        accepted=len(stored),
        duplicates=len(duplicate_ids),
        rejected=len(rejected),
        errors=rejected,
        duplicate_event_ids=duplicate_ids,
        realtime_updated=updated,
    )
