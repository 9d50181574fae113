"""Real-time Redis state kept current on every accepted event: recent history, purchases, popularity.

Popularity uses forward decay: an event at time t adds w·2^((t − T0)/half_life) to its item's score, so
scores never need a decay sweep and ranking by score equals ranking by exponentially decayed counts.
T0 is kept in Redis (`Keys.popularity_epoch`) and moves forward: every rebuild recomputes the sets from
Postgres against a fresh T0, and an ingest that finds T0 more than REBASE_AFTER half-lives old rescales
the sets in Redis first (one ZUNIONSTORE per set) — so scores stay far from float overflow however short
the half-life and however long the service runs without a rebuild.
"""

from __future__ import annotations

import logging
from collections import Counter
from operator import itemgetter
from typing import TYPE_CHECKING

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from app.eventlog import POPULARITY_WEIGHTS
from app.events.realtime_scripts import BATCH_SHA, LIVE_SHA, SCRIPTS, USER_SHA
from app.settings import Settings
from app.store.batch import Command, round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import encode_history, item_meta_json
from app.store.keys import Keys

if TYPE_CHECKING:
    from app.events.validate import EventRow

log = logging.getLogger(__name__)

LEGACY_DECAY_EPOCH = 1_704_067_200.0  # 2024-01-01: T0 of sets written before T0 was stored


_BY_EPOCH = itemgetter(10)


def _calls(
    keys: Keys, settings: Settings, rows: list[EventRow], created_items: list[str]
) -> tuple[list[tuple[list[str], list[object]]], list[tuple[list[str], list[object]]]]:
    """(KEYS, ARGV) of `USER_SCRIPT` per shopper, and of `LIVE_SCRIPT` per live bucket touched."""
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

    calls: list[tuple[list[str], list[object]]] = []
    cap = settings.history_length
    for user, mine in history.items():
        args: list[object] = [cap]
        if len(mine) == 2:
            args += (1, mine[0], 1, mine[1])
        else:
            members = set(mine[1::2])
            args += (len(mine) // 2, *mine[0::2], len(members), *members)
        if user in bought:
            args += bought[user]
        calls.append(([keys.history(user), keys.seen(user), keys.purchased(user)], args))
    return calls, _live_calls(keys, base, per_second, popularity, created_items, recstats)


def _live_calls(
    keys: Keys, base: float, per_second: float, popularity: dict[str, float], created_items: list[str],
    recstats: Counter[tuple[str, str]],
) -> list[tuple[list[str], list[object]]]:
    """One `LIVE_SCRIPT` call per bucket of the items touched (`Keys.buckets`). With one bucket the
    recommendation counters ride in its call (always made, as before buckets); with several, they go
    in a call of their own on `{live}`, made only when there are counters."""
    counters: list[object] = [len(recstats)]
    for (strategy, event_type), n in recstats.items():
        counters += (strategy, event_type, n)
    if keys.buckets <= 1:
        groups = {0: (list(popularity), created_items)}
    else:
        groups = {b: (ids, []) for b, ids in keys.by_bucket(popularity).items()}
        for b, new in keys.by_bucket(created_items).items():
            groups.setdefault(b, ([], []))[1].extend(new)
    calls: list[tuple[list[str], list[object]]] = []
    for b, (items, created) in groups.items():
        live: list[object] = [item_meta_json([], None, True, None), len(created), *created,
                              repr(base), per_second, LEGACY_DECAY_EPOCH, len(items)]
        for item in items:
            live += (item, repr(popularity[item]))  # a string: JSON has no infinity
        live += counters if keys.buckets <= 1 else [0]
        # a bucket's call writes no counters, so its own overall set stands in for the strategies key
        strategies = keys.recommendation_strategies() if keys.buckets <= 1 else keys.popularity(b)
        calls.append((
            [keys.item_meta(b), keys.popularity(b), keys.popularity_categories(b), keys.popularity_epoch(b),
             strategies],
            [orjson.dumps(live).decode(), keys.popularity_category("", b), keys.recommendation_stats("")],
        ))
    if keys.buckets > 1 and recstats:
        # the counters alone: a call that writes no metadata or popularity never touches KEYS 1-4, so
        # the strategies key (on `{live}`) stands in for them and routes the call to its slot
        live = [item_meta_json([], None, True, None), 0, repr(base), per_second, LEGACY_DECAY_EPOCH, 0, *counters]
        strategies = keys.recommendation_strategies()
        calls.append(([strategies] * 5, [orjson.dumps(live).decode(), keys.popularity_category(""),
                                         keys.recommendation_stats("")]))
    return calls


def _commands(
    calls: tuple[list[tuple[list[str], list[object]]], list[tuple[list[str], list[object]]]], cluster: bool
) -> list[Command]:
    """The EVALSHA commands of a batch's calls: one per call on a cluster, else one for them all."""
    users, lives = calls
    if not cluster:
        return [("EVALSHA", BATCH_SHA, 0, orjson.dumps([*users, *lives]), len(users))]
    shas = [USER_SHA] * len(users) + [LIVE_SHA] * len(lives)
    commands = [("EVALSHA", sha, len(k), *k, *a) for sha, (k, a) in zip(shas, [*users, *lives], strict=True)]
    return commands  # type: ignore[return-value]  # the calls hold text and numbers only


async def apply_events(
    redis: aioredis.Redis, keys: Keys, settings: Settings, rows: list[EventRow], created_items: list[str]
) -> bool:
    """Push stored events into Redis in one round trip. False when Redis is unreachable."""
    if not rows:
        return True
    commands = _commands(_calls(keys, settings, rows, created_items), isinstance(redis, RedisCluster))
    try:
        replies = await round_trip(redis, commands, TIMEOUT_SECONDS, raise_errors=False)
        unknown = [c for c, reply in zip(commands, replies, strict=True) if isinstance(reply, NoScriptError)]
        if unknown:  # a new, restarted or flushed Redis (node): load the scripts there, run those again
            for script in SCRIPTS.values():
                await redis.script_load(script)
            replies = await round_trip(redis, unknown, TIMEOUT_SECONDS)
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
    except (RedisError, OSError) as exc:
        log.warning("realtime.skipped", extra={"events": len(rows), "error": type(exc).__name__})
        return False
    return True
