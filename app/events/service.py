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

# The batch is COPYed into a per-connection temporary table, then moved with three set-based
# statements; sorted inserts give every writer the same lock order (no deadlocks between batches).
_COLUMNS = "event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id, properties"
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS ingest_stage (
    event_id text, user_id text, item_id text, type text, value float8, price float8, ts timestamptz,
    session_id text, recommendation_id text, properties jsonb
) ON COMMIT DELETE ROWS
"""
_UPSERT_USERS = """
INSERT INTO users (user_id) SELECT DISTINCT user_id FROM ingest_stage ORDER BY user_id
ON CONFLICT DO NOTHING
"""
_UPSERT_ITEMS = """
WITH wanted AS (SELECT DISTINCT item_id FROM ingest_stage WHERE item_id IS NOT NULL),
created AS (
    INSERT INTO items (item_id) SELECT item_id FROM wanted ORDER BY item_id ON CONFLICT DO NOTHING
    RETURNING item_id, categories
)
SELECT item_id, categories, true AS created FROM created
UNION ALL
SELECT i.item_id, i.categories, false FROM items i JOIN wanted w USING (item_id) WHERE i.deleted_at IS NULL
"""
_INSERT_EVENTS = f"""
INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM ingest_stage ORDER BY event_id
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
        for index, raw_event in enumerate(raw):
            try:
                parsed.append(EventIn.model_validate(raw_event))
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
                too_far = f"timestamp: more than {settings.max_future_seconds:g} s in the future"
                rejected.append(RejectedEvent(index=index, event_id=event.event_id, error=too_far))
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
        ordered = list(rows.items())
        async with engine.begin() as conn:
            raw_conn = await conn.get_raw_connection()
            pg = raw_conn.driver_connection
            assert pg is not None
            async with pg.cursor() as cur:
                await cur.execute(_STAGE)
                async with cur.copy(f"COPY ingest_stage ({_COLUMNS}) FROM STDIN") as copy:
                    for event_id, e in ordered:
                        await copy.write_row((
                            event_id, e.user_id, e.item_id, e.type, e.value, e.price, e.timestamp or now,
                            e.session_id, e.recommendation_id,
                            None if e.properties is None else json.dumps(e.properties),
                        ))
                await cur.execute(_UPSERT_USERS)
                await cur.execute(_UPSERT_ITEMS)
                for item_id, cats, created in await cur.fetchall():
                    categories[item_id] = list(cats or [])
                    if created:
                        created_items.add(item_id)
                await cur.execute(_INSERT_EVENTS)
                inserted = {r[0] for r in await cur.fetchall()}
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
