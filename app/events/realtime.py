"""Real-time Redis state kept current on every accepted event: recent history, purchases, popularity.

Popularity uses forward decay: an event at time t adds w·2^((t − T0)/half_life) to its item's score, so
scores never need a decay sweep and ranking by score equals ranking by exponentially decayed counts.
The worker rescales (rebuilds) these sets from Postgres at each rebuild, which also bounds growth.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.settings import Settings
from app.store.codec import encode_history, item_meta_json
from app.store.keys import Keys

if TYPE_CHECKING:
    from app.events.service import StoredEvent

log = logging.getLogger(__name__)

DECAY_EPOCH = 1_704_067_200.0  # 2024-01-01, T0 of the forward-decayed popularity scores
POPULARITY_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "add_to_cart": 3.0, "purchase": 5.0, "rating": 2.0,
    "like": 2.0, "bookmark": 2.0, "remove_from_cart": 0.0, "dislike": 0.0,
}


# Every real-time write of a batch in one server-side call: one round trip and one command to parse,
# instead of thousands of pipelined commands. The argument is one string of tokens, each ended by the
# unit separator (0x1f, which no id, history entry or JSON text can contain): flat sections, each
# prefixed by its count.
_APPLY_SCRIPT = r"""
local a, i = {}, 1
for token in string.gmatch(ARGV[1], "([^\31]*)\31") do a[#a + 1] = token end
local function nxt() local v = a[i]; i = i + 1; return v end
local cap = tonumber(nxt()) - 1
for _ = 1, tonumber(nxt()) do
  local key, n = nxt(), tonumber(nxt())
  for _ = 1, n do redis.call('LPUSH', key, nxt()) end
  redis.call('LTRIM', key, 0, cap)
end
for _ = 1, tonumber(nxt()) do
  local key, n = nxt(), tonumber(nxt())
  for _ = 1, n do redis.call('SADD', key, nxt()) end
end
for _ = 1, tonumber(nxt()) do
  local key, member, inc = nxt(), nxt(), nxt()
  redis.call('ZINCRBY', key, inc, member)
end
local cats_key, n = nxt(), tonumber(nxt())
for _ = 1, n do redis.call('SADD', cats_key, nxt()) end
local meta_key = nxt()
for _ = 1, tonumber(nxt()) do
  local field, value = nxt(), nxt()
  redis.call('HSETNX', meta_key, field, value)
end
local strategies_key = nxt()
for _ = 1, tonumber(nxt()) do
  local strategy, key, field, inc = nxt(), nxt(), nxt(), nxt()
  redis.call('SADD', strategies_key, strategy)
  redis.call('HINCRBY', key, field, inc)
end
return i - 1
"""


def decayed_weight(event_type: str, ts: float, half_life_days: float) -> float:
    return float(POPULARITY_WEIGHTS[event_type] * 2.0 ** ((ts - DECAY_EPOCH) / (half_life_days * 86400.0)))


async def apply_events(
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    events: list[StoredEvent],
    categories: dict[str, list[str]],
    created_items: set[str],
) -> bool:
    """Push accepted events into Redis in one pipelined round trip. False when Redis is unreachable."""
    if not events:
        return True
    history: dict[str, list[str]] = defaultdict(list)
    bought: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    popularity: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    recstats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in sorted(events, key=lambda e: e.ts):
        if e.item_id is not None:
            history[e.user_id].append(encode_history(e.ts, e.type, e.item_id, e.value))
            seen[e.user_id].add(e.item_id)
            if e.type == "purchase":
                bought[e.user_id].append(e.item_id)
            if e.item_id in categories and POPULARITY_WEIGHTS[e.type] > 0:
                w = decayed_weight(e.type, e.ts, settings.popularity_half_life_days)
                popularity[keys.popularity()][e.item_id] += w
                for category in categories[e.item_id]:
                    popularity[keys.popularity_category(category)][e.item_id] += w
        if e.recommendation_id and "." in e.recommendation_id:
            recstats[e.recommendation_id.split(".", 1)[0]][e.type] += 1

    args: list[str | float | int] = [settings.history_length]
    args.append(len(history))
    for user_id, entries in history.items():
        args += [keys.history(user_id), len(entries), *entries]
    sets = [(keys.purchased(u), items) for u, items in bought.items()]
    sets += [(keys.seen(u), sorted(items)) for u, items in seen.items()]
    args.append(len(sets))
    for key, members in sets:
        args += [key, len(members), *members]
    increments = [(zkey, item_id, w) for zkey, inc in popularity.items() for item_id, w in inc.items()]
    args.append(len(increments))
    for zkey, item_id, w in increments:
        args += [zkey, item_id, repr(w)]
    cats = sorted({c for item_cats in categories.values() for c in item_cats})
    args += [keys.popularity_categories(), len(cats), *cats]
    args += [keys.item_meta(), len(created_items)]
    for item_id in created_items:
        args += [item_id, item_meta_json([], None, True, None)]
    counts = [(strategy, t, n) for strategy, per_type in recstats.items() for t, n in per_type.items()]
    args += [keys.recommendation_strategies(), len(counts)]
    for strategy, event_type, n in counts:
        args += [strategy, keys.recommendation_stats(strategy), event_type, n]
    try:
        await redis.eval(_APPLY_SCRIPT, 0, "".join(f"{a}\x1f" for a in args))
    except (RedisError, OSError) as exc:
        log.warning("realtime.skipped", extra={"events": len(events), "error": type(exc).__name__})
        return False
    return True
