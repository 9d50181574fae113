"""Real-time Redis state kept current on every accepted event: recent history, purchases, popularity.

Popularity uses forward decay: an event at time t adds w·2^((t − T0)/half_life) to its item's score, so
scores never need a decay sweep and ranking by score equals ranking by exponentially decayed counts.
The worker rescales (rebuilds) these sets from Postgres at each rebuild, which also bounds growth.
"""

from __future__ import annotations

import logging
from collections import Counter
from operator import attrgetter
from typing import TYPE_CHECKING

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.settings import Settings
from app.store.codec import encode_history, item_meta_json
from app.store.keys import Keys

if TYPE_CHECKING:
    from app.events.validate import EventRow

log = logging.getLogger(__name__)

DECAY_EPOCH = 1_704_067_200.0  # 2024-01-01, T0 of the forward-decayed popularity scores
POPULARITY_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0, "rating": 2.0,
    "like": 2.0, "bookmark": 2.0, "remove_from_cart": 0.0, "dislike": 0.0,
}


# Every real-time write of a batch in one server-side call: one round trip, and one command per key
# rather than per event. The argument is one JSON array of strings, read in order: sections, each
# prefixed by its count. A history list is trimmed only once it outgrows the cap.
# Popularity per category is applied here because the item's categories live in its Redis metadata;
# an item without metadata is deleted (or unknown) and earns no popularity.
_APPLY_SCRIPT = r"""
local a, i = cjson.decode(ARGV[1]), 1
local function nxt() local v = a[i]; i = i + 1; return v end
local function many(command, key, n)
  local reply
  while n > 0 do
    local m = math.min(n, 256)
    reply = redis.call(command, key, unpack(a, i, i + m - 1))
    i, n = i + m, n - m
  end
  return reply
end
local cap = tonumber(nxt()) - 1
for _ = 1, tonumber(nxt()) do
  local key = nxt()
  if many('LPUSH', key, tonumber(nxt())) > cap + 1 then redis.call('LTRIM', key, 0, cap) end
end
for _ = 1, tonumber(nxt()) do
  local key = nxt()
  many('SADD', key, tonumber(nxt()))
end
local meta_key, new_meta = nxt(), nxt()
for _ = 1, tonumber(nxt()) do redis.call('HSETNX', meta_key, nxt(), new_meta) end
local pop_key, category_prefix, categories_key = nxt(), nxt(), nxt()
local n = tonumber(nxt())
local items, increments, categories = {}, {}, {}
for j = 1, n do items[j], increments[j] = nxt(), nxt() end
for first = 1, n, 256 do
  local last = math.min(n, first + 255)
  local metas = redis.call('HMGET', meta_key, unpack(items, first, last))
  for j = first, last do
    local meta = metas[j - first + 1]
    if meta then
      redis.call('ZINCRBY', pop_key, increments[j], items[j])
      local item_categories = cjson.decode(meta)['c']
      if type(item_categories) == 'table' then
        for _, category in ipairs(item_categories) do
          redis.call('ZINCRBY', category_prefix .. category, increments[j], items[j])
          categories[category] = true
        end
      end
    end
  end
end
local named = {}
for category in pairs(categories) do named[#named + 1] = category end
for first = 1, #named, 256 do
  redis.call('SADD', categories_key, unpack(named, first, math.min(#named, first + 255)))
end
local strategies_key = nxt()
for _ = 1, tonumber(nxt()) do
  local strategy, key, field, inc = nxt(), nxt(), nxt(), nxt()
  redis.call('SADD', strategies_key, strategy)
  redis.call('HINCRBY', key, field, inc)
end
return i - 1
"""


def _tokens(keys: Keys, settings: Settings, rows: list[EventRow], created_items: list[str]) -> list[str]:
    # This loop runs once per ingested event: plain dicts and locals, no helper calls.
    history: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    bought: dict[str, list[str]] = {}
    popularity: dict[str, float] = {}
    recstats: Counter[tuple[str, str]] = Counter()
    per_second = 1.0 / (settings.popularity_half_life_days * 86400.0)
    for r in sorted(rows, key=attrgetter("epoch")):  # oldest first, so the newest ends up at the head
        user, item, event_type, epoch = r.user_id, r.item_id, r.type, r.epoch
        if item is not None:
            entry = encode_history(epoch, event_type, item, r.value)
            entries = history.get(user)
            if entries is None:
                history[user], seen[user] = [entry], {item}
            else:
                entries.append(entry)
                seen[user].add(item)
            if event_type == "purchase":
                bought.setdefault(user, []).append(item)
            weight = POPULARITY_WEIGHTS[event_type]
            if weight > 0:
                decayed = weight * 2.0 ** ((epoch - DECAY_EPOCH) * per_second)
                popularity[item] = popularity.get(item, 0.0) + decayed
        if r.recommendation_id and "." in r.recommendation_id:
            recstats[r.recommendation_id.split(".", 1)[0], event_type] += 1

    out = [str(settings.history_length), str(len(history))]
    for user, entries in history.items():
        out += (keys.history(user), str(len(entries)), *entries)
    out.append(str(len(bought) + len(seen)))
    for user, items in bought.items():
        out += (keys.purchased(user), str(len(items)), *items)
    for user, members in seen.items():
        out += (keys.seen(user), str(len(members)), *members)
    out += [keys.item_meta(), item_meta_json([], None, True, None), str(len(created_items)), *created_items]
    out += [keys.popularity(), keys.popularity_category(""), keys.popularity_categories(), str(len(popularity))]
    for item, score in popularity.items():
        out += (item, repr(score))
    out += [keys.recommendation_strategies(), str(len(recstats))]
    for (strategy, event_type), n in recstats.items():
        out += (strategy, keys.recommendation_stats(strategy), event_type, str(n))
    return out


async def apply_events(
    redis: aioredis.Redis, keys: Keys, settings: Settings, rows: list[EventRow], created_items: list[str]
) -> bool:
    """Push stored events into Redis in one round trip. False when Redis is unreachable."""
    if not rows:
        return True
    tokens = _tokens(keys, settings, rows, created_items)
    try:
        await redis.eval(_APPLY_SCRIPT, 0, orjson.dumps(tokens))
    except (RedisError, OSError) as exc:
        log.warning("realtime.skipped", extra={"events": len(rows), "error": type(exc).__name__})
        return False
    return True
