"""Real-time Redis state kept current on every accepted event: recent history, purchases, popularity.

Popularity uses forward decay: an event at time t adds w·2^((t − T0)/half_life) to its item's score, so
scores never need a decay sweep and ranking by score equals ranking by exponentially decayed counts.
T0 is kept in Redis (`Keys.popularity_epoch`) and moves forward: every rebuild recomputes the sets from
Postgres against a fresh T0, and an ingest that finds T0 more than REBASE_AFTER half-lives old rescales
the sets in Redis first (one ZUNIONSTORE per set) — so scores stay far from float overflow however short
the half-life and however long the service runs without a rebuild.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from app.eventlog import POPULARITY_WEIGHTS
from app.settings import Settings
from app.store.codec import encode_history, item_meta_json
from app.store.keys import Keys

if TYPE_CHECKING:
    from app.events.validate import EventRow

log = logging.getLogger(__name__)

LEGACY_DECAY_EPOCH = 1_704_067_200.0  # 2024-01-01: T0 of sets written before T0 was stored
REBASE_AFTER = 64  # half-lives: scores stay below 2^64 × the events' weights


# Every real-time write of a batch in one server-side call: one round trip, and one command per key
# rather than per event. The argument is one JSON array read in order: sections, each prefixed by its
# count (a JSON number). A user's history and seen-set come together (a user has both or neither),
# named by the user id alone: the script puts the key around it.
# A history list is trimmed only once it outgrows the cap.
# Popularity per category is applied here because the item's categories live in its Redis metadata;
# an item without metadata is deleted (or unknown) and earns no popularity. Metadata without categories
# (what ingest creates) is told by its first bytes rather than decoded.
# Scores stay text (one ZINCRBY per item and category): a ZMSCORE and a ZADD per key measured dearer,
# their number-text conversions costing more than the commands they save.
_APPLY_SCRIPT = r"""
local a = cjson.decode(ARGV[1])
local call, unpack, min = redis.call, unpack, math.min
local function many(command, key, first, n)
  local reply
  local last = first + n - 1
  for s = first, last, 256 do reply = call(command, key, unpack(a, s, min(last, s + 255))) end
  return reply
end
local cap, history_before, history_after, seen_before, seen_after = a[1], a[2], a[3], a[4], a[5]
local i = 7
for _ = 1, a[6] do
  local user, n = a[i], a[i + 1]
  local key = history_before .. user .. history_after
  local length
  if n == 1 then length = call('LPUSH', key, a[i + 2]) else length = many('LPUSH', key, i + 2, n) end
  if length > cap then call('LTRIM', key, 0, cap - 1) end
  i = i + 2 + n
  key, n = seen_before .. user .. seen_after, a[i]
  if n == 1 then call('SADD', key, a[i + 1]) else many('SADD', key, i + 1, n) end
  i = i + 1 + n
end
for _ = 1, a[i] do
  local n = a[i + 2]
  many('SADD', a[i + 1], i + 3, n)
  i = i + 2 + n
end
local meta_key, new_meta, n = a[i + 1], a[i + 2], a[i + 3]
for j = i + 4, i + 3 + n do call('HSETNX', meta_key, a[j], new_meta) end
i = i + 4 + n
local pop_key, category_prefix, categories_key, epoch_key = a[i], a[i + 1], a[i + 2], a[i + 3]
local scale = 1
if a[i + 7] > 0 then
  -- the increments are relative to the batch's own time (a[i + 4]); scale them to the stored T0
  local base, per_second = a[i + 4], a[i + 5]
  local t0 = tonumber(call('GET', epoch_key)) or a[i + 6]
  local exponent = (tonumber(base) - t0) * per_second
  if exponent > REBASE_AFTER then
    local factor = 2 ^ -exponent
    call('ZUNIONSTORE', pop_key, 1, pop_key, 'WEIGHTS', factor)
    for _, category in ipairs(call('SMEMBERS', categories_key)) do
      local key = category_prefix .. category
      call('ZUNIONSTORE', key, 1, key, 'WEIGHTS', factor)
    end
    call('SET', epoch_key, base)
  elseif exponent ~= 0 then
    scale = 2 ^ exponent
  end
end
i = i + 4
local pairs_end = i + 3 + 2 * a[i + 3]
local categories = {}
for first = i + 4, pairs_end, 512 do
  local ids = {}
  for j = first, min(pairs_end, first + 511), 2 do ids[#ids + 1] = a[j] end
  local metas = call('HMGET', meta_key, unpack(ids))
  for k, meta in ipairs(metas) do
    if meta then
      local item, inc = ids[k], a[first + 2 * k - 1]
      if scale ~= 1 then inc = tonumber(inc) * scale end
      call('ZINCRBY', pop_key, inc, item)
      if string.sub(meta, 1, 7) ~= '{"c":[]' then
        local item_categories = cjson.decode(meta)['c']
        if type(item_categories) == 'table' then
          for _, category in ipairs(item_categories) do
            call('ZINCRBY', category_prefix .. category, inc, item)
            categories[category] = true
          end
        end
      end
    end
  end
end
i = pairs_end + 1
local named = {}
for category in pairs(categories) do named[#named + 1] = category end
for first = 1, #named, 256 do
  call('SADD', categories_key, unpack(named, first, min(#named, first + 255)))
end
local strategies_key = a[i]
for j = i + 2, i + 1 + 4 * a[i + 1], 4 do
  call('SADD', strategies_key, a[j])
  call('HINCRBY', a[j + 1], a[j + 2], a[j + 3])
end
return #a
""".replace("REBASE_AFTER", str(REBASE_AFTER))
_APPLY_SHA = hashlib.sha1(_APPLY_SCRIPT.encode()).hexdigest()  # EVALSHA: 40 bytes a call, not 4 KB

_BY_EPOCH = itemgetter(10)
_MARK = "\x00"  # never part of an id: control characters are rejected


def _around(key_of: Callable[[str], str]) -> tuple[str, str]:
    """What `key_of` puts before and after an id: the script builds a batch's thousand user keys."""
    before, _, after = key_of(_MARK).partition(_MARK)
    return before, after


def _tokens(keys: Keys, settings: Settings, rows: list[EventRow], created_items: list[str]) -> list[object]:
    # This loop runs once per ingested event: plain dicts and locals, no helper calls on the usual path.
    history: dict[str, list[str]] = {}  # user -> [entry, item, entry, item, ...]
    bought: dict[str, list[str]] = {}
    popularity: dict[str, float] = {}
    recstats: Counter[tuple[str, str]] = Counter()
    per_second = 1.0 / (settings.popularity_half_life_days * 86400.0)
    weights = POPULARITY_WEIGHTS
    rows = sorted(rows, key=_BY_EPOCH)  # oldest first, so the newest ends up at the head
    base = rows[-1][10]  # popularity increments are relative to the batch's latest event: at most w each
    for _, user, item, event_type, value, _, _, _, recommendation_id, _, epoch in rows:
        if item is not None:
            # `encode_history` written out for the usual valueless event (a test holds them equal)
            entry = (f"{epoch:.3f}|{event_type}||{item}" if value is None
                     else encode_history(epoch, event_type, item, value))
            mine = history.get(user)
            if mine is None:
                history[user] = [entry, item]
            else:
                mine.append(entry)
                mine.append(item)
            if event_type == "purchase":
                bought.setdefault(user, []).append(item)
            weight = weights[event_type]
            if weight > 0:
                decayed = weight * 2.0 ** ((epoch - base) * per_second)
                popularity[item] = popularity.get(item, 0.0) + decayed
        if recommendation_id and "." in recommendation_id:
            recstats[recommendation_id.split(".", 1)[0], event_type] += 1

    history_before, history_after = _around(keys.history)
    seen_before, seen_after = _around(keys.seen)
    out: list[object] = [
        settings.history_length, history_before, history_after, seen_before, seen_after, len(history)
    ]
    for user, mine in history.items():
        if len(mine) == 2:
            out += (user, 1, mine[0], 1, mine[1])
        else:
            members = set(mine[1::2])
            out += (user, len(mine) // 2, *mine[0::2], len(members), *members)
    out.append(len(bought))
    for user, items in bought.items():
        out += (keys.purchased(user), len(items), *items)
    out += [keys.item_meta(), item_meta_json([], None, True, None), len(created_items), *created_items]
    out += [keys.popularity(), keys.popularity_category(""), keys.popularity_categories(),
            keys.popularity_epoch(), repr(base), per_second, LEGACY_DECAY_EPOCH, len(popularity)]
    for item, score in popularity.items():
        out += (item, repr(score))  # a string: JSON has no infinity
    out += [keys.recommendation_strategies(), len(recstats)]
    for (strategy, event_type), n in recstats.items():
        out += (strategy, keys.recommendation_stats(strategy), event_type, n)
    return out


async def apply_events(
    redis: aioredis.Redis, keys: Keys, settings: Settings, rows: list[EventRow], created_items: list[str]
) -> bool:
    """Push stored events into Redis in one round trip. False when Redis is unreachable."""
    if not rows:
        return True
    tokens = _tokens(keys, settings, rows, created_items)
    payload = orjson.dumps(tokens)
    try:
        try:
            await redis.evalsha(_APPLY_SHA, 0, payload)
        except NoScriptError:  # a new, restarted or flushed Redis: EVAL caches the script there
            await redis.eval(_APPLY_SCRIPT, 0, payload)
    except (RedisError, OSError) as exc:
        log.warning("realtime.skipped", extra={"events": len(rows), "error": type(exc).__name__})
        return False
    return True
