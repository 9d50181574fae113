"""Small per-shard tasks of the distributed rebuild: samples, id tables, popularity, hydration."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.settings import Settings
from app.store.client import make_redis
from app.store.keys import Keys
from app.worker import hydrate
from app.worker.load import Snapshot


def sizes(snapshot: Snapshot) -> tuple[int, int, float, float]:
    """(events, orphan events, newest event time or -inf, oldest or +inf)."""
    log = snapshot.log
    if not len(log):
        return 0, snapshot.orphan_events, float("-inf"), float("inf")
    return len(log), snapshot.orphan_events, float(log.ts.max()), float(log.ts.min())


@dataclass(frozen=True)
class Part:
    """Some of a shard's shoppers with all their events: the whole shard, or a sample of it."""

    log: EventLog
    event_ids: NDArray[np.int64]
    attributes: list[dict[str, Any]]


def whole(snapshot: Snapshot) -> Part:
    assert snapshot.event_ids is not None
    return Part(snapshot.log, snapshot.event_ids, snapshot.user_attributes)


def sample(snapshot: Snapshot, share: float, seed: int) -> Part:
    """The events of the shard's shoppers whose id hashes below `share` (with `seed`): a choice made per
    shopper id, so the sample is the same however the shop is cut into shards (models chosen on it do
    not change with the number of workers); only those shoppers stay in the user table."""
    log = snapshot.log
    assert snapshot.event_ids is not None
    salt = seed.to_bytes(8, "little")
    drawn = np.array([zlib.crc32(str(u).encode(), zlib.crc32(salt)) for u in log.user_ids], dtype=np.float64)
    chosen = (drawn < share * 2**32) & (np.bincount(log.user, minlength=log.n_users) > 0)
    index = np.cumsum(chosen, dtype=np.int32) - 1
    mask = chosen[log.user]
    sub = log.select(mask)
    sub = EventLog(user=index[sub.user], item=sub.item, type=sub.type, value=sub.value, price=sub.price, ts=sub.ts,
                   session=sub.session, user_ids=log.user_ids[chosen], item_ids=log.item_ids)  # fmt: skip
    return Part(sub, snapshot.event_ids[mask], [a for a, c in zip(snapshot.user_attributes, chosen, strict=True) if c])


def user_id_lines(snapshot: Snapshot) -> bytes:
    """The shard's part of the version's "users" blob."""
    return "\n".join(map(str, snapshot.log.user_ids)).encode()


def popularity_part(snapshot: Snapshot, t0: float, settings: Settings) -> NDArray[np.float64]:
    return hydrate.popularity_scores(snapshot, t0, settings)


def hydrate_histories(snapshot: Snapshot, settings: Settings, erased: list[str]) -> None:
    """Write the shard's shoppers' recent histories, purchases and seen sets to Redis."""
    assert settings.redis_url
    client = make_redis(settings.redis_url, cluster=settings.redis_cluster)
    try:
        hydrate.hydrate_histories(client, Keys.of(settings), settings, snapshot, erased)
    finally:
        client.close()


def concat(parts: list[Part], item_ids: NDArray[np.object_]) -> Part:
    """Shards' parts (in shard order) as one, its events in the order of the whole shop's log."""
    logs = [p.log for p in parts]
    offsets = np.cumsum([0] + [x.n_users for x in logs[:-1]])
    session_offsets = np.cumsum([0] + [int(x.session.max(initial=-1)) + 1 for x in logs[:-1]])
    user = np.concatenate([x.user + np.int32(o) for x, o in zip(logs, offsets, strict=True)]).astype(np.int32)
    session = np.concatenate([np.where(x.session >= 0, x.session + np.int32(o), -1)
                              for x, o in zip(logs, session_offsets, strict=True)]).astype(np.int32)  # fmt: skip
    ids = np.concatenate([p.event_ids for p in parts])
    order = np.lexsort((ids, np.concatenate([x.ts for x in logs])))
    columns = {name: np.concatenate([getattr(x, name) for x in logs])[order]
               for name in ("item", "type", "value", "price", "ts")}  # fmt: skip
    log = EventLog(user=user[order], session=session[order], **columns,
                   user_ids=np.concatenate([x.user_ids for x in logs]), item_ids=item_ids)  # fmt: skip
    return Part(log, ids[order], [a for p in parts for a in p.attributes])
