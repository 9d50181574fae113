"""GDPR access: everything stored about one user, from Postgres and from Redis.

The Redis side mirrors `service.erase_user_state`: what erasure removes is exactly what export shows —
the per-user keys (`Keys.user_keys`: history, purchases, seen items, and any added later) and, in every
live model version, the user's field in each hash part listed under `user_parts` in the version's meta,
their score in each sorted set listed under `user_zsets`, and whether the version's user id table lists
them.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import UserNotFound
from app.events.models import Event
from app.store.codec import decode_history
from app.store.keys import Keys
from app.store.versions import versions_holding_users
from app.triggers import service as trigger_service
from app.users.models import User
from app.users.schemas import (
    ExportedEvent,
    HistoryEntry,
    ModelUserState,
    RedisUserState,
    StoredValue,
    UserExport,
    UserRecord,
)

_PRINTABLE_WHITESPACE = {"\n", "\r", "\t"}


def _text(raw: bytes | str | int | float) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def decode_value(raw: bytes | str) -> StoredValue:
    """JSON when it parses, text when it is printable UTF-8, else base64 (packed arrays and the like)."""
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return StoredValue(encoding="base64", value=base64.b64encode(raw).decode())
    if any(not ch.isprintable() and ch not in _PRINTABLE_WHITESPACE for ch in text):
        return StoredValue(encoding="base64", value=base64.b64encode(raw).decode())
    try:
        return StoredValue(encoding="json", value=json.loads(text))
    except ValueError:
        return StoredValue(encoding="text", value=text)


def _history_entry(raw: bytes) -> HistoryEntry | None:
    try:
        ts, event_type, value, item_id = decode_history(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return HistoryEntry(ts=ts, type=event_type, value=value, item_id=item_id)


AnyValue = StoredValue | list[StoredValue] | dict[str, StoredValue]


async def _read_any(redis: aioredis.Redis, key: str) -> AnyValue:
    kind = _text(await redis.type(key))
    if kind == "list":
        return [decode_value(v) for v in await redis.lrange(key, 0, -1)]
    if kind == "set":
        return [decode_value(v) for v in sorted(await redis.smembers(key))]
    if kind == "zset":
        pairs = await redis.zrange(key, 0, -1, withscores=True)
        return {_text(pair[0]): StoredValue(encoding="json", value=pair[1]) for pair in pairs}
    if kind == "hash":
        fields = await redis.hgetall(key)
        return {_text(f): decode_value(v) for f, v in fields.items()}
    raw = await redis.get(key)
    return decode_value(raw or b"")


async def _model_state(redis: aioredis.Redis, keys: Keys, version: str, user_id: str) -> ModelUserState:
    hashes, zsets = await redis.hmget(keys.model(version, "meta"), ["user_parts", "user_zsets"])
    hash_parts = [p for p in _text(hashes or b"").split(",") if p]
    zset_parts = [p for p in _text(zsets or b"").split(",") if p]
    pipe = redis.pipeline(transaction=False)
    for part in hash_parts:
        pipe.hget(keys.model(version, part), user_id)
    for part in zset_parts:
        pipe.zscore(keys.model(version, part), user_id)
    pipe.get(keys.model(version, "users"))
    *values, table = await pipe.execute()
    fields = {
        part: decode_value(v) for part, v in zip(hash_parts, values[: len(hash_parts)], strict=True)
        if v is not None
    }
    scores = {
        part: float(v) for part, v in zip(zset_parts, values[len(hash_parts) :], strict=True) if v is not None
    }
    listed = table is not None and user_id in _text(table).split("\n")
    return ModelUserState(version=version, fields=fields, scores=scores, in_user_table=listed)


async def redis_state(redis: aioredis.Redis, keys: Keys, user_id: str) -> RedisUserState:
    """The user's real-time keys and their state in every live model version (what erasure removes)."""
    pipe = redis.pipeline(transaction=False)
    pipe.lrange(keys.history(user_id), 0, -1)
    pipe.smembers(keys.purchased(user_id))
    pipe.get(keys.model_pointer())
    history_raw, purchased_raw, current_raw = await pipe.execute()

    current = _text(current_raw) if current_raw is not None else None
    versions = await versions_holding_users(redis, keys)
    if current is not None and current not in versions:
        versions.append(current)
    models = [await _model_state(redis, keys, version, user_id) for version in versions]

    history = [e for e in (_history_entry(r) for r in history_raw) if e is not None]
    other: dict[str, AnyValue] = {}
    undecodable = [r for r in history_raw if _history_entry(r) is None]
    if undecodable:
        other[keys.history(user_id)] = [decode_value(r) for r in undecodable]
    known = {keys.history(user_id), keys.purchased(user_id)}
    for key in keys.user_keys(user_id):
        if key not in known and await redis.exists(key):
            other[key] = await _read_any(redis, key)
    return RedisUserState(
        history=history,
        purchased=sorted(_text(m) for m in purchased_raw),
        current_model_version=current,
        models=models,
        other_keys=other,
    )


async def export_user(session: AsyncSession, redis: aioredis.Redis, keys: Keys, user_id: str) -> UserExport:
    """The user row, all their events (every column, oldest first) and their Redis state."""
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"No user `{user_id}`.")
    rows = (
        await session.execute(select(Event).where(Event.user_id == user_id).order_by(Event.ts, Event.id))
    ).scalars()
    events = [ExportedEvent.model_validate(row, from_attributes=True) for row in rows]
    record = UserRecord(
        user_id=user.user_id, attributes=dict(user.attributes or {}), created_at=user.created_at,
        updated_at=user.updated_at,
    )
    state = await redis_state(redis, keys, user_id)
    campaigns = await trigger_service.export_user(session, user_id)
    return UserExport(exported_at=datetime.now(UTC), user=record, events=events, redis=state, campaigns=campaigns)
