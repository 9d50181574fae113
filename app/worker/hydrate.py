"""Re-hydrate Redis's real-time state from a Postgres snapshot.

Every rebuild recomputes the popularity sets from the event log (which also rescales the
forward-decayed scores). After Redis lost its data (flush, restart without persistence) the sentinel
key is gone, and the item metadata, recent histories and purchase sets are rebuilt too.
"""

from __future__ import annotations

import time

import numpy as np
import redis

from app.eventlog import EVENT_TYPES, TYPE_CODE
from app.events.realtime import DECAY_EPOCH, POPULARITY_WEIGHTS
from app.settings import Settings
from app.store.codec import encode_history, item_meta_json
from app.store.keys import Keys
from app.worker.load import Snapshot

HYDRATE_HISTORY = 50  # per user; enough for serving, bounded for a million shoppers


def is_hydrated(client: redis.Redis, keys: Keys) -> bool:
    return bool(client.exists(keys.hydrated()))


def refresh_realtime(client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot) -> None:
    _refresh_popularity(client, keys, settings, snapshot)
    if not is_hydrated(client, keys):
        _hydrate_items(client, keys, snapshot)
        _hydrate_histories(client, keys, settings, snapshot)
        client.set(keys.hydrated(), str(time.time()))


def _refresh_popularity(client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot) -> None:
    log, catalog = snapshot.log, snapshot.catalog
    weights = np.array([POPULARITY_WEIGHTS[t] for t in EVENT_TYPES])[log.type.astype(np.intp)]
    use = (log.item >= 0) & (weights > 0)
    use[use] &= ~catalog.deleted[log.item[use]]
    half_life = settings.popularity_half_life_days * 86400.0
    decayed = weights[use] * np.exp2((log.ts[use] - DECAY_EPOCH) / half_life)
    score = np.bincount(log.item[use], weights=decayed, minlength=log.n_items)
    ranked = np.flatnonzero(score > 0)
    staged: dict[str, dict[str, float]] = {keys.popularity(): {}}
    for k in ranked:
        item_id = str(log.item_ids[k])
        staged[keys.popularity()][item_id] = float(score[k])
        for category in catalog.items[k]["categories"]:
            staged.setdefault(keys.popularity_category(category), {})[item_id] = float(score[k])
    pipe = client.pipeline(transaction=False)
    for key, members in staged.items():
        if members:
            pipe.zadd(key + ":staging", members)  # type: ignore[arg-type,unused-ignore]
    pipe.execute()
    pipe = client.pipeline(transaction=True)
    for key, members in staged.items():
        if members:
            pipe.rename(key + ":staging", key)
    categories = [k for k in staged if k != keys.popularity()]
    if categories:
        pipe.sadd(keys.popularity_categories(), *[c.rsplit(":", 1)[-1] for c in categories])
    pipe.execute()


def _hydrate_items(client: redis.Redis, keys: Keys, snapshot: Snapshot) -> None:
    catalog = snapshot.catalog
    mapping = {
        item["item_id"]: item_meta_json(item["categories"], item["price"], bool(item["available"]),
                                        item["title"], item["brand"])
        for k, item in enumerate(catalog.items)
        if not catalog.deleted[k]
    }
    if mapping:
        client.hset(keys.item_meta(), mapping=mapping)  # type: ignore[arg-type,unused-ignore]


def _hydrate_histories(client: redis.Redis, keys: Keys, settings: Settings, snapshot: Snapshot) -> None:
    log = snapshot.log
    keep_n = min(HYDRATE_HISTORY, settings.history_length)
    rows = np.flatnonzero(log.item >= 0)
    order = rows[np.lexsort((-log.ts[rows], log.user[rows]))]  # by user, newest first
    users = log.user[order]
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    order = order[rank < keep_n]
    purchase = TYPE_CODE["purchase"]
    pipe = client.pipeline(transaction=False)
    current: int | None = None
    entries: list[str] = []

    def flush(user: int) -> None:
        user_id = str(log.user_ids[user])
        pipe.delete(keys.history(user_id))
        pipe.rpush(keys.history(user_id), *entries)

    for row in order:
        user = int(log.user[row])
        if user != current:
            if current is not None:
                flush(current)
            current, entries = user, []
        item_id = str(log.item_ids[log.item[row]])
        entries.append(
            encode_history(float(log.ts[row]), EVENT_TYPES[log.type[row]], item_id, float(log.value[row]))
        )
        if len(pipe) > 5000:
            pipe.execute()
    if current is not None:
        flush(current)
    pipe.execute()
    # purchases and seen items come from the whole log, not only the recent history
    pairs = np.unique(log.user[rows].astype(np.int64) * log.n_items + log.item[rows])
    bought_pairs = np.unique(log.user[rows][log.type[rows] == purchase].astype(np.int64) * log.n_items
                             + log.item[rows][log.type[rows] == purchase])
    for key_of, codes in ((keys.seen, pairs), (keys.purchased, bought_pairs)):
        if len(codes) == 0:
            continue
        users, items = np.divmod(codes, log.n_items)
        starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
        for a, b in zip(starts, [*starts[1:], len(users)], strict=True):
            pipe.sadd(key_of(str(log.user_ids[users[a]])), *[str(x) for x in log.item_ids[items[a:b]]])
            if len(pipe) > 5000:
                pipe.execute()
        pipe.execute()
