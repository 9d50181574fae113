"""Who will buy this item: its audience as ranked at the last rebuild (`app.worker.stage_audience`),
filtered live, paged like the propensity audiences (`app.common.paging` cursors, pinned to a version).

Live filters, one Redis round trip per window of candidates: erased shoppers are blank in the
version's user id table (and never shown); shoppers who bought the item since the rebuild are found in
their live purchase sets and dropped (or flagged, with `include_buyers`); each member's purchase
probability comes with them from the same round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray

from app.common.paging import decode_cursor, encode_cursor
from app.errors import BadRequest, ItemNotFound, ModelNotReady
from app.propensity.schemas import ItemAudienceMember, ItemAudienceOut
from app.recommend.algo_audience import PARTS
from app.recommend.model_cache import ModelCache
from app.store.batch import round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import text, unpack_neighbours
from app.store.keys import Keys

SLACK = 16
"""Candidates read beyond what the page still needs, for those the live purchase sets drop."""
PROBABILITY_TARGET = "purchase"

_EMPTY = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))


@dataclass(frozen=True)
class Ranked:
    """An item's audience as published: user indices (into the version's id table), scores scaled so
    the item's strongest affinity is 1, whether each one had bought it at the rebuild; best first."""

    users: NDArray[np.int32]
    scores: NDArray[np.float64]
    bought: NDArray[np.bool_]


def _ranked(raw_others: bytes | None, raw_buyers: bytes | None, include_buyers: bool) -> Ranked:
    oi, os_ = unpack_neighbours(raw_others) if raw_others else _EMPTY
    bi, bs = unpack_neighbours(raw_buyers) if raw_buyers else _EMPTY
    top = max(float(os_[0]) if len(os_) else 0.0, float(bs[0]) if len(bs) else 0.0) or 1.0
    if not include_buyers:
        return Ranked(oi, os_.astype(np.float64) / top, np.zeros(len(oi), dtype=bool))
    users = np.concatenate([oi, bi])
    scores = np.concatenate([os_, bs]).astype(np.float64) / top
    bought = np.concatenate([np.zeros(len(oi), dtype=bool), np.ones(len(bi), dtype=bool)])
    order = np.lexsort((users, -scores))  # one order for every page: score, then user index
    return Ranked(users[order], scores[order], bought[order])


async def _version(redis: aioredis.Redis, keys: Keys, item_id: str, cursor: str | None) -> tuple[str, int, int, str]:
    """(version to read, erasure epoch, start position, cursor member) after the 404 / 503 checks."""
    version_raw, exists, epoch = await round_trip(redis, [
        ("GET", keys.model_pointer()), ("HEXISTS", keys.item_meta_of(item_id), item_id), ("GET", keys.erasure_epoch()),
    ], TIMEOUT_SECONDS)
    if not exists:
        raise ItemNotFound(f"No item `{item_id}`.")
    if version_raw is None:
        raise ModelNotReady("No model yet: the first rebuild has not finished.", headers={"Retry-After": "30"})
    version, start, member = text(version_raw), 0, ""
    if cursor:
        cursor_version, rank, member = decode_cursor(cursor)
        start = rank + 1
        if cursor_version != version:
            # a rebuild published a new ranking; continue the old one while it is kept
            version = cursor_version
            if not await redis.exists(keys.model(version, "users")):
                raise BadRequest("This cursor's model version has expired; start again without a cursor.")
    return version, int(epoch or 0), start, member


async def item_audience(
    redis: aioredis.Redis, keys: Keys, cache: ModelCache, item_id: str, n: int, min_score: float,
    include_buyers: bool, cursor: str | None,
) -> ItemAudienceOut:
    """One page of the shoppers most likely to buy `item_id`, best first; see the module docstring."""
    version, epoch, start, member = await _version(redis, keys, item_id, cursor)
    arrays = await cache.get(version)
    ids = await cache.user_ids(arrays, epoch)
    raw_others, raw_buyers, meta = await round_trip(redis, [
        ("HGET", keys.model(version, PARTS[0]), item_id),
        ("HGET", keys.model(version, PARTS[1]), item_id),
        ("HMGET", keys.model(version, "meta"), "propensity_horizon_days", "propensity_base_rates"),
    ], TIMEOUT_SECONDS)
    ranked = _ranked(raw_others, raw_buyers, include_buyers)
    names = ids[ranked.users] if len(ids) else np.zeros(0, dtype=object)
    if member and start - 1 < len(names) and names[start - 1] != member:
        found = np.flatnonzero(names == member)  # a cursor of the other include_buyers setting
        start = int(found[0]) + 1 if len(found) else start
    # erased shoppers are blank in the id table; the ranking is sorted, so min_score is a prefix
    valid = np.flatnonzero((names != "") & (ranked.scores >= min_score))
    candidates = valid[valid >= start]
    probabilities = _has_probability(meta[1])
    users: list[ItemAudienceMember] = []
    last, taken = -1, 0
    while len(users) < n and taken < len(candidates):
        window = candidates[taken:taken + n - len(users) + SLACK]
        taken += len(window)
        window_ids = [str(u) for u in names[window]]
        replies = await round_trip(redis, [
            *[("SISMEMBER", keys.purchased(u), item_id) for u in window_ids],
            *([("HMGET", keys.model(version, f"prop:{PROBABILITY_TARGET}"), *window_ids)] if probabilities else []),
        ], TIMEOUT_SECONDS)
        scored = replies[len(window_ids)] if probabilities else [None] * len(window_ids)
        live_buyers = replies[:len(window_ids)]
        for pos, user, live, record in zip(window.tolist(), window_ids, live_buyers, scored, strict=True):
            bought = bool(ranked.bought[pos]) or bool(live)
            if bought and not include_buyers:
                continue
            users.append(ItemAudienceMember(user_id=user, score=round(float(ranked.scores[pos]), 6),
                                            probability=_probability(record), bought=bought))
            last = pos
            if len(users) == n:
                break
    more = len(users) == n and bool((valid > last).any())
    return ItemAudienceOut(
        item_id=item_id, model_version=version, include_buyers=include_buyers,
        probability_target=PROBABILITY_TARGET, horizon_days=float(meta[0]) if probabilities and meta[0] else None,
        users=users, next_cursor=encode_cursor(version, last, users[-1].user_id) if more else None,
    )


def _has_probability(raw_rates: bytes | None) -> bool:
    rates: dict[str, Any] = json.loads(raw_rates) if raw_rates else {}
    return PROBABILITY_TARGET in rates


def _probability(record: bytes | None) -> float | None:
    return None if record is None else float(json.loads(record)["p"])
