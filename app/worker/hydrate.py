"""Re-hydrate Redis's real-time state from a Postgres snapshot.

Every rebuild recomputes the popularity sets from the event log (which also rescales the
forward-decayed scores) and adds to them what ingest put on the live sets since its snapshot (see
`mark_popularity`). After Redis lost its data (flush, restart without persistence) the sentinel
key is gone, and the item metadata, recent histories and purchase sets are rebuilt too; so they are
after an outage in which Redis missed writes (`app.worker.repair`), its sentinel still in place.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator

import numpy as np
import redis
from numpy.typing import NDArray

from app.eventlog import EVENT_TYPES, POPULARITY_WEIGHTS, TYPE_CODE, unique_sorted
from app.settings import Settings
from app.store import bulk
from app.store.codec import encode_history, item_meta_json, new_meta_epoch
from app.store.keys import Keys
from app.worker.load import Snapshot

HYDRATE_HISTORY = 50  # per user; enough for serving, bounded for a million shoppers


def is_hydrated(client: redis.Redis, keys: Keys) -> bool:
    return bool(client.exists(keys.hydrated()))


def refresh_realtime(
    client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot, repair: bool = False,
    erased: Collection[str] = (),
) -> bool:
    """`repair`: Redis missed writes while unreachable (`app.worker.repair`): re-hydrate as after a flush.
    `erased`: users erased since the snapshot, whose histories are not put back. True if it hydrated."""
    _refresh_popularity(client, keys, settings, snapshot)
    if repair or not is_hydrated(client, keys):
        hydrate_items(client, keys, snapshot)
        hydrate_histories(client, keys, settings, snapshot, erased)
        client.set(keys.hydrated(), str(time.time()))
        return True
    return False


# KEYS (`_popularity_keys`, all tagged `{live}`, or one bucket's `{live:B}`: one slot): the overall set,
# the set of category names, T0, the marks of the overall set and of T0, the staged overall set. ARGV
# 1-3: the key prefixes of the category sets, of their marks and of their staged copies (only Redis
# knows every category's name, and the prefixes carry the same tag, so those keys are on the call's
# slot). ARGV 4: seconds the marks live.
# One script, so the marks copy one instant of the live sets (COPY needs Redis 6.2).
_MARK_POPULARITY = """
local all_key, categories_key, epoch_key, mark_all, mark_epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local category_prefix, mark_prefix, ttl = ARGV[1], ARGV[2], ARGV[4]
local function mark(key, copy)
  if redis.call('COPY', key, copy, 'REPLACE') == 1 then
    redis.call('EXPIRE', copy, ttl)
  else
    redis.call('DEL', copy)
  end
end
mark(all_key, mark_all)
for _, category in ipairs(redis.call('SMEMBERS', categories_key)) do
  mark(category_prefix .. category, mark_prefix .. category)
end
mark(epoch_key, mark_epoch)
"""

# Swap the staged sets in: set = staged + scale * (set - mark), where set - mark is what ingest added
# since the snapshot and scale converts it from the live T0 to the new one (0 when there is no mark, or
# when ingest moved T0 meanwhile: the increments are then lost until the next rebuild, as before
# marks). Members left at 0 or below (erased, deleted, emptied) go; so does a set left empty.
# KEYS and ARGV 1-3 as _MARK_POPULARITY's, then ARGV 4: the new T0, 5: 1 / half-life in seconds, and the
# categories that have a staged set.
_SWAP_POPULARITY = """
local all_key, categories_key, epoch_key, mark_all, mark_epoch = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local staged_all = KEYS[6]
local category_prefix, mark_prefix, staged_prefix = ARGV[1], ARGV[2], ARGV[3]
local t0, per_second = tonumber(ARGV[4]), tonumber(ARGV[5])
local live_t0 = tonumber(redis.call('GET', epoch_key))
local scale = 0
if live_t0 and live_t0 == tonumber(redis.call('GET', mark_epoch)) then
  scale = 2 ^ ((live_t0 - t0) * per_second)
end
local function swap(key, mark, staging, staged)
  -- a staging set left by a rebuild that died is not this rebuild's: weight 0
  redis.call('ZUNIONSTORE', key, 3, staging, key, mark, 'WEIGHTS', staged and 1 or 0, scale, -scale)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', 0)
  redis.call('DEL', staging, mark)
  return redis.call('EXISTS', key)
end
swap(all_key, mark_all, staged_all, true)
local categories = {}
for _, category in ipairs(redis.call('SMEMBERS', categories_key)) do categories[category] = false end
for k = 6, #ARGV do categories[ARGV[k]] = true end
for category, staged in pairs(categories) do
  if swap(category_prefix .. category, mark_prefix .. category, staged_prefix .. category, staged) == 1 then
    redis.call('SADD', categories_key, category)
  else
    redis.call('SREM', categories_key, category)
  end
end
redis.call('SET', epoch_key, ARGV[4])
redis.call('DEL', mark_epoch)
"""

MARK_SECONDS = 24 * 3600  # marks of a rebuild that died expire on their own


_POPULARITY_KEYS = 6


def _popularity_keys(keys: Keys, bucket: int) -> list[str]:
    """Both scripts' KEYS (the first `_POPULARITY_KEYS`) and ARGV 1-3 for one live bucket: its
    popularity keys, their marks, their staged copies, and the category sets' prefixes."""
    overall, categories = keys.popularity(bucket), keys.popularity_category("", bucket)
    epoch = keys.popularity_epoch(bucket)
    return [overall, keys.popularity_categories(bucket), epoch, keys.popularity_mark(overall, bucket),
            keys.popularity_mark(epoch, bucket), keys.popularity_staged(overall, bucket),
            categories, keys.popularity_mark(categories, bucket), keys.popularity_staged(categories, bucket)]


def mark_popularity(client: redis.Redis, keys: Keys) -> None:
    """Copy the live popularity sets and their T0 just before the rebuild snapshots the event log.

    Ingest keeps adding to the live sets while the rebuild runs (minutes on a large shop); the swap
    in `_refresh_popularity` adds those increments (live minus mark) to the recomputed sets instead of
    overwriting them. An event committed between the mark and the snapshot counts twice until the
    next rebuild: a window of milliseconds instead of the whole rebuild's worth of lost increments.
    One script per live bucket (each on its own slot; redis-py's cluster pipeline runs no scripts, and
    a rebuild can afford a round trip per bucket).
    """
    for bucket in range(keys.buckets):
        client.eval(_MARK_POPULARITY, _POPULARITY_KEYS, *_popularity_keys(keys, bucket), MARK_SECONDS)


def _refresh_popularity(client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot) -> None:
    """Replace the popularity sets with scores recomputed from the event log against a fresh T0 (now),
    plus what ingest added since `mark_popularity`, swapped in with the new T0 in one script per live
    bucket (every bucket gets the same T0); sets left without members (every event of theirs erased, a
    category emptied) are dropped."""
    log = snapshot.log
    t0 = max(snapshot.now, float(log.ts.max()) if len(log.ts) else 0.0)
    write_popularity(client, keys, settings, snapshot, popularity_scores(snapshot, t0, settings), t0)


def popularity_scores(snapshot: Snapshot, t0: float, settings: Settings) -> NDArray[np.float64]:
    """Each item's popularity at T0 `t0` from the snapshot's events, float64[n_items] (a user shard's
    part of it, on a shard)."""
    log, catalog = snapshot.log, snapshot.catalog
    weights = np.array([POPULARITY_WEIGHTS[t] for t in EVENT_TYPES])[log.type.astype(np.intp)]
    use = (log.item >= 0) & (weights > 0)
    use[use] &= ~catalog.deleted[log.item[use]]
    decayed = weights[use] * np.exp2((log.ts[use] - t0) / (settings.popularity_half_life_days * 86400.0))
    return np.asarray(np.bincount(log.item[use], weights=decayed, minlength=log.n_items), dtype=np.float64)


def write_popularity(
    client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot, score: NDArray[np.float64], t0: float
) -> None:
    """Stage the sets of `score` (at T0 `t0`) and swap them in (`_refresh_popularity`)."""
    log, catalog = snapshot.log, snapshot.catalog
    half_life = settings.popularity_half_life_days * 86400.0
    ranked = np.flatnonzero(score > 0)
    overall: dict[int, dict[str, float]] = {b: {} for b in range(keys.buckets)}
    # category names may hold any character, ":" too
    by_category: dict[int, dict[str, dict[str, float]]] = {b: {} for b in range(keys.buckets)}
    for k in ranked:
        item_id = str(log.item_ids[k])
        bucket = keys.bucket(item_id)
        overall[bucket][item_id] = float(score[k])
        for category in catalog.items[k]["categories"]:
            by_category[bucket].setdefault(category, {})[item_id] = float(score[k])
    pipe = client.pipeline(transaction=False)
    for bucket in range(keys.buckets):
        staged = {keys.popularity(bucket): overall[bucket]} | {
            keys.popularity_category(c, bucket): m for c, m in by_category[bucket].items()}
        for key, members in staged.items():
            pipe.delete(keys.popularity_staged(key, bucket))
            if members:
                pipe.zadd(keys.popularity_staged(key, bucket), members)  # type: ignore[arg-type,unused-ignore]
    pipe.execute()
    for bucket in range(keys.buckets):
        client.eval(_SWAP_POPULARITY, _POPULARITY_KEYS, *_popularity_keys(keys, bucket), repr(t0), 1.0 / half_life,
                    *by_category[bucket])


def hydrate_items(client: redis.Redis, keys: Keys, snapshot: Snapshot) -> None:
    catalog = snapshot.catalog
    mappings: dict[int, dict[str, str]] = {}
    for k, item in enumerate(catalog.items):
        if not catalog.deleted[k]:
            mappings.setdefault(keys.bucket(item["item_id"]), {})[item["item_id"]] = item_meta_json(
                item["categories"], item["price"], bool(item["available"]), item["title"], item["brand"],
                item["tags"], item["attributes"])
    if mappings:
        pipe = client.pipeline(transaction=False)
        for bucket, mapping in mappings.items():
            pipe.hset(keys.item_meta(bucket), mapping=mapping)  # type: ignore[arg-type,unused-ignore]
        pipe.set(keys.item_meta_epoch(), new_meta_epoch())
        pipe.execute()


def _runs(keys: NDArray[np.int64]) -> tuple[list[int], list[int]]:
    """(starts, stops) of the runs of equal values in a sorted array, as lists."""
    if len(keys) == 0:
        return [], []
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    return starts.tolist(), np.r_[starts[1:], len(keys)].tolist()


def _add_per_user(
    user_keys: list[str], starts: list[int], stops: list[int], values: list[str]
) -> Iterator[tuple[str, ...]]:
    """One SADD per user with its slice of `values` (a set keeps what ingest added meanwhile)."""
    for key, a, b in zip(user_keys, starts, stops, strict=True):
        yield "SADD", key, *values[a:b]


# Ingest goes on while a flushed Redis is hydrated: a shopper's list may already hold entries pushed
# since the flush (newer than the snapshot, or also in it). So each list is merged with its snapshot
# entries rather than replaced: the union of both, newest first, capped. An entry is the same string
# whichever side wrote it, so duplicates drop out and a hydrate run twice adds nothing. KEYS[1]: the
# history; ARGV: the cap, then its snapshot entries (newest first). One shopper per call: a call's keys
# share a slot on a Redis Cluster.
_MERGE_HISTORY = r"""
local call, unpack, min, tonumber, match = redis.call, unpack, math.min, tonumber, string.match
local key, cap, n = KEYS[1], tonumber(ARGV[1]), #ARGV - 1
local function newer(x, y) return tonumber(match(x, '^[^|]*')) > tonumber(match(y, '^[^|]*')) end
local current = call('LRANGE', key, 0, -1)
if #current == 0 then
  call('RPUSH', key, unpack(ARGV, 2, 1 + min(n, cap)))
else
  local merged, taken = {}, {}
  for _, entry in ipairs(current) do
    if not taken[entry] then taken[entry] = true; merged[#merged + 1] = entry end
  end
  for j = 2, 1 + n do
    local entry = ARGV[j]
    if not taken[entry] then taken[entry] = true; merged[#merged + 1] = entry end
  end
  table.sort(merged, newer)
  call('DEL', key)
  for first = 1, min(#merged, cap), 256 do
    call('RPUSH', key, unpack(merged, first, min(#merged, cap, first + 255)))
  end
end
return 0
"""


def _merge_histories(
    sha: str, cap: int, user_keys: list[str], starts: list[int], stops: list[int], entries: list[str]
) -> Iterator[tuple[str, ...]]:
    """One EVALSHA of `_MERGE_HISTORY` per shopper."""
    for key, a, b in zip(user_keys, starts, stops, strict=True):
        yield ("EVALSHA", sha, "1", key, str(cap), *entries[a:b])


def hydrate_histories(
    client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot, erased: Collection[str]
) -> None:
    log = snapshot.log
    keep_n = min(HYDRATE_HISTORY, settings.history_length)
    kept = log.item >= 0
    if erased:
        kept &= ~np.isin(log.user_ids, list(erased))[log.user]
    rows = np.flatnonzero(kept)
    order = rows[np.lexsort((-log.ts[rows], log.user[rows]))]  # by user, newest first
    users = log.user[order]
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    order = order[rank < keep_n]
    item_ids = [str(x) for x in log.item_ids]
    entries = [
        encode_history(ts, EVENT_TYPES[ty], item_ids[item], value)
        for ts, ty, item, value in zip(log.ts[order].tolist(), log.type[order].tolist(),
                                       log.item[order].tolist(), log.value[order].tolist(), strict=True)
    ]  # fmt: skip
    users = log.user[order]
    first, stop = _runs(users)
    user_ids = log.user_ids[users[first]].tolist() if first else []
    sha = client.script_load(_MERGE_HISTORY)  # on a cluster, on every master
    history_keys = [keys.history(str(u)) for u in user_ids]
    bulk.send(client, _merge_histories(sha, settings.history_length, history_keys, first, stop, entries))
    # purchases and seen items come from the whole log, not only the recent history
    bought = rows[log.type[rows] == TYPE_CODE["purchase"]]
    pairs, bought_pairs = (unique_sorted(log.user[at].astype(np.int64) * log.n_items + log.item[at])
                           for at in (rows, bought))
    for key_of, codes in ((keys.seen, pairs), (keys.purchased, bought_pairs)):
        pair_users, pair_items = np.divmod(codes, log.n_items)
        first, stop = _runs(pair_users)
        user_ids = log.user_ids[pair_users[first]].tolist() if first else []
        members = [item_ids[i] for i in pair_items.tolist()]
        bulk.send(client, _add_per_user([key_of(str(u)) for u in user_ids], first, stop, members))
