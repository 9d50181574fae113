"""Users: attributes, GDPR erasure and merging an anonymous session into a known user.

Postgres changes flush inside the request's transaction. Erasure and merge change Redis before the
router commits: with Redis unreachable nothing is committed (503, retry), and both Redis steps are
idempotent, so a retry after a failed commit is safe.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.common import locks
from app.errors import BadRequest, UserNotFound
from app.events.models import Event
from app.store import erasure
from app.store.keys import Keys
from app.store.versions import versions_holding_users
from app.triggers import service as trigger_service
from app.users.models import User, UserErasure
from app.users.schemas import UserIn, UserOut
from app.webhooks import service as webhook_service

_ERASE_EVENTS = """
WITH gone AS (DELETE FROM events WHERE user_id = :user_id RETURNING event_id),
     ids AS (DELETE FROM event_ids i USING gone WHERE i.event_id = gone.event_id)
SELECT count(*) FROM gone
"""


async def upsert_user(session: AsyncSession, user_id: str, body: UserIn) -> None:
    stmt = insert(User).values(user_id=user_id, attributes=body.attributes)
    stmt = stmt.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={"attributes": stmt.excluded.attributes, "updated_at": datetime.now(UTC)},
    )
    await session.execute(stmt)


async def get_user(session: AsyncSession, user_id: str) -> UserOut:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"No user `{user_id}`.")
    count = await session.scalar(select(func.count()).select_from(Event).where(Event.user_id == user_id))
    return UserOut(
        user_id=user.user_id, attributes=user.attributes, created_at=user.created_at,
        updated_at=user.updated_at, event_count=count or 0,
    )


async def lock_users(session: AsyncSession, user_ids: list[str]) -> None:
    """Hold off every other writer of these users until the transaction ends (`app.common.locks`):
    an ingest batch waits, then finds the row gone and stores it again, instead of committing an event
    for a user this transaction deletes."""
    await session.execute(text(locks.WRITE_USER_LOCKS), {"user_ids": user_ids})


async def erase_user_rows(session: AsyncSession, user_id: str) -> int:
    """Delete the user and every event of theirs (one transaction). Returns the events deleted."""
    await lock_users(session, [user_id])
    # held until commit: a rebuild about to publish waits for this erasure to land (app.worker.erasures)
    await session.execute(select(func.pg_advisory_xact_lock_shared(locks.ERASURES)))
    # from every monthly partition, and their ids with them: an event id can be personal data too
    events = await session.scalar(text(_ERASE_EVENTS), {"user_id": user_id})
    deleted = await session.execute(delete(User).where(User.user_id == user_id).returning(User.user_id))
    if deleted.first() is None:
        raise UserNotFound(f"No user `{user_id}`.")
    # the tombstone a running rebuild checks before it publishes what it read before this erasure
    tombstone = insert(UserErasure).values(user_id=user_id)
    await session.execute(tombstone.on_conflict_do_update(
        index_elements=[UserErasure.user_id], set_={"erased_at": func.clock_timestamp()}
    ))
    await trigger_service.erase_user(session, user_id)  # nothing armed for them fires
    await webhook_service.erase_user(session, user_id)  # nor is anything about them still sent
    return int(events or 0)


async def erase_user_state(redis: aioredis.Redis, keys: Keys, user_id: str) -> None:
    """Remove every Redis trace of the user: real-time keys and per-user fields of every model version
    still in Redis (the registered ones and those in their grace period)."""
    pipe = redis.pipeline(transaction=False)
    pipe.delete(*keys.user_keys(user_id))
    for version in await versions_holding_users(redis, keys):
        hashes, zsets = erasure.user_parts(await redis.hmget(keys.model(version, "meta"), erasure.META_FIELDS))
        for part in hashes:
            pipe.hdel(keys.model(version, part), user_id)
        for part in zsets:
            pipe.zrem(keys.model(version, part), user_id)
        pipe.eval(erasure.BLANK_IDS, 1, keys.model(version, "users"), user_id)
    pipe.incr(keys.erasure_epoch())
    await pipe.execute()


async def merge_rows(session: AsyncSession, user_id: str, from_user_id: str) -> int:
    if user_id == from_user_id:
        raise BadRequest("A user cannot be merged into itself.")
    await lock_users(session, [user_id, from_user_id])
    source = await session.get(User, from_user_id)
    if source is None:
        raise UserNotFound(f"No user `{from_user_id}` to merge from.")
    stmt = insert(User).values(user_id=user_id, attributes=source.attributes)
    await session.execute(stmt.on_conflict_do_nothing(index_elements=[User.user_id]))
    moved = await session.execute(
        update(Event).where(Event.user_id == from_user_id).values(user_id=user_id)
    )
    await trigger_service.merge_user(session, user_id, from_user_id)  # an anonymous cart reaches the known shopper
    await session.execute(delete(User).where(User.user_id == from_user_id))
    return int(moved.rowcount or 0)  # type: ignore[attr-defined]


# A merge moves the source shopper's state into the target's: two shoppers, two hash tags, so two
# scripts, each on one shopper's slot. The first takes the source's state and drops its keys at once,
# so an entry ingest pushes to the source meanwhile is either taken or lands after; the second folds it
# into the target's history (newest first, capped; equal times keep the target's entries first) and
# its purchase and seen sets, so an entry ingest pushes to the target meanwhile is merged, never
# overwritten by a list read before it.

# KEYS: history, bought, seen. Returns the three, emptied.
_TAKE_STATE = """
local taken = {redis.call('LRANGE', KEYS[1], 0, -1), redis.call('SMEMBERS', KEYS[2]),
               redis.call('SMEMBERS', KEYS[3])}
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return taken
"""

# KEYS: history, bought, seen. ARGV: the cap, the counts of history entries and bought items, then the
# entries (newest first), the bought items, the seen items.
_FOLD_STATE = """
local cap, n_history, n_bought = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local entries = {}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  entries[#entries + 1] = {tonumber(string.match(entry, '^[^|]*')), #entries, entry}
end
for k = 4, 3 + n_history do
  entries[#entries + 1] = {tonumber(string.match(ARGV[k], '^[^|]*')), #entries, ARGV[k]}
end
table.sort(entries, function(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] < b[2]
end)
redis.call('DEL', KEYS[1])
local n = math.min(#entries, cap)
for first = 1, n, 256 do
  local chunk = {}
  for k = first, math.min(n, first + 255) do chunk[#chunk + 1] = entries[k][3] end
  redis.call('RPUSH', KEYS[1], unpack(chunk))
end
local function add(key, first, last)
  for s = first, last, 256 do redis.call('SADD', key, unpack(ARGV, s, math.min(last, s + 255))) end
end
add(KEYS[2], 4 + n_history, 3 + n_history + n_bought)
add(KEYS[3], 4 + n_history + n_bought, #ARGV)
return n
"""


async def merge_state(
    redis: aioredis.Redis, keys: Keys, user_id: str, from_user_id: str, history_length: int
) -> None:
    """Fold the source user's history and purchases into the target's, newest first, then drop them."""
    history, bought, seen = await redis.eval(
        _TAKE_STATE, 3, keys.history(from_user_id), keys.purchased(from_user_id), keys.seen(from_user_id)
    )
    await redis.eval(
        _FOLD_STATE, 3, keys.history(user_id), keys.purchased(user_id), keys.seen(user_id),
        history_length, len(history), len(bought), *history, *bought, *seen,
    )
