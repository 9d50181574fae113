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


def decayed_weight(event_type: str, ts: float, half_life_days: float) -> float:
    return POPULARITY_WEIGHTS[event_type] * 2.0 ** ((ts - DECAY_EPOCH) / (half_life_days * 86400.0))


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
    popularity: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    recstats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in sorted(events, key=lambda e: e.ts):
        if e.item_id is not None:
            history[e.user_id].append(encode_history(e.ts, e.type, e.item_id, e.value))
            if e.type == "purchase":
                bought[e.user_id].append(e.item_id)
            if e.item_id in categories and POPULARITY_WEIGHTS[e.type] > 0:
                w = decayed_weight(e.type, e.ts, settings.popularity_half_life_days)
                popularity[keys.popularity()][e.item_id] += w
                for category in categories[e.item_id]:
                    popularity[keys.popularity_category(category)][e.item_id] += w
        if e.recommendation_id and "." in e.recommendation_id:
            recstats[e.recommendation_id.split(".", 1)[0]][e.type] += 1

    pipe = redis.pipeline(transaction=False)
    for user_id, entries in history.items():
        key = keys.history(user_id)
        pipe.lpush(key, *entries)  # oldest first, so the newest ends at the head
        pipe.ltrim(key, 0, settings.history_length - 1)
    for user_id, item_ids in bought.items():
        pipe.sadd(keys.purchased(user_id), *item_ids)
    for zkey, increments in popularity.items():
        for item_id, w in increments.items():
            pipe.zincrby(zkey, w, item_id)
    cats = {c for item_cats in categories.values() for c in item_cats}
    if cats:
        pipe.sadd(keys.popularity_categories(), *cats)
    for item_id in created_items:
        pipe.hsetnx(keys.item_meta(), item_id, item_meta_json([], None, True, None))
    for strategy, counts in recstats.items():
        pipe.sadd(keys.recommendation_strategies(), strategy)
        for event_type, n in counts.items():
            pipe.hincrby(keys.recommendation_stats(strategy), event_type, n)
    try:
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("realtime.skipped", extra={"events": len(events), "error": type(exc).__name__})
        return False
    return True
