"""From the event log to the weighted user-item interaction matrix (and one user's history).

Strength of a (user, item) pair = log1p(max(0, sum over its events of weight(type) * decay(age))).
Negative events (remove_from_cart, dislike, a rating well below the user's mean) subtract before the
clip, so they cancel positive evidence but never become negative similarity mass.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import EVENT_TYPES, TYPE_CODE, EventLog

SECONDS_PER_DAY = 86_400.0

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 1.5,
    "add_to_cart": 3.0,
    "remove_from_cart": -1.0,
    "purchase": 5.0,
    "rating": 3.0,
    "like": 4.0,
    "dislike": -3.0,
    "bookmark": 2.0,
}


@dataclass(frozen=True)
class InteractionConfig:
    """How events become interaction strengths.

    weights : per event type; a rating event weighs `weights["rating"] + rating_scale * (r - centre)`
        where centre is the user's mean rating (`rating_centering`) or `rating_midpoint`, so a rating
        above the user's mean is stronger positive evidence and one far below it is negative.
    half_life_days : exponential time decay, an event `half_life_days` old counts half; inf = none.
    half_life_events : decay by recency rank, the user's n-th most recent event (0 = latest) counts
        0.5 ** (n / half_life_events); inf = none. Used for user histories: what a shopper did in the
        last few events predicts the next ones far better than wall-clock age alone.
    rating_threshold : ratings below it weigh nothing (a "thresholded" treatment: only liked items
        count); -inf keeps every rating.
    value_weighted : an event other than a rating that carries a positive `value` (a quantity, a play
        count) weighs its type's weight times that value, before the log damping of the sum.
    binary : every (user, item) pair with net positive evidence weighs 1 in the matrix CF is fitted
        on, however many or strong its events (repeat buyers of cheap staples stop dominating the
        similarities). Histories are never binarised: their weights carry the recency order.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    half_life_days: float = float("inf")
    half_life_events: float = float("inf")
    rating_centering: bool = True
    rating_scale: float = 0.5
    rating_midpoint: float = 3.0
    rating_threshold: float = float("-inf")
    value_weighted: bool = False
    binary: bool = False


def _type_weight_table(weights: Mapping[str, float]) -> NDArray[np.float64]:
    """Weight per type code, float64[len(EVENT_TYPES)] (a fresh copy: callers write into it)."""
    return _weight_table(tuple(sorted(weights.items()))).copy()


@functools.lru_cache(maxsize=64)
def _weight_table(weights: tuple[tuple[str, float], ...]) -> NDArray[np.float64]:
    unknown = {name for name, _ in weights} - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types in weights: {sorted(unknown)}")
    by_name = dict(weights)
    return np.array([float(by_name.get(name, 0.0)) for name in EVENT_TYPES], dtype=np.float64)


def decay(
    ts: NDArray[np.float64], now: float | NDArray[np.float64], half_life_days: float
) -> NDArray[np.float64]:
    """0.5 ** (age / half-life) per event, float64[n]; events after `now` count fully.

    `now` is a scalar or float64[n] (a per-event reference time, e.g. each user's own "now").
    """
    if not np.isfinite(half_life_days) or half_life_days <= 0:
        return np.ones(ts.shape, dtype=np.float64)
    age_days = np.maximum(now - ts, 0.0) / SECONDS_PER_DAY
    return np.exp2(-age_days / half_life_days)


def event_weights(
    user: NDArray[np.integer],
    type_code: NDArray[np.integer],
    value: NDArray[np.floating],
    ts: NDArray[np.float64],
    n_users: int,
    now: float | NDArray[np.float64],
    config: InteractionConfig,
) -> NDArray[np.float64]:
    """Signed, decayed weight of each event, float64[n] (before aggregation and damping).

    `now` is a scalar or float64[n_users] (each user's reference time).
    """
    table = _type_weight_table(config.weights)
    w = table[type_code.astype(np.intp)]
    is_rating = (type_code == TYPE_CODE["rating"]) & np.isfinite(value)
    if is_rating.any():
        r = value[is_rating].astype(np.float64)
        if config.rating_centering:
            u = user[is_rating]
            sums = np.bincount(u, weights=r, minlength=n_users)
            counts = np.bincount(u, minlength=n_users)
            centre = (sums / np.maximum(counts, 1))[u]
        else:
            centre = np.full(r.shape, config.rating_midpoint)
        w[is_rating] = np.where(r >= config.rating_threshold,
                                table[TYPE_CODE["rating"]] + config.rating_scale * (r - centre), 0.0)
    if config.value_weighted:
        counted = (type_code != TYPE_CODE["rating"]) & np.isfinite(value) & (value > 0)
        w[counted] = w[counted] * value[counted].astype(np.float64)
    ref: float | NDArray[np.float64] = (
        float(now) if np.ndim(now) == 0 else np.asarray(now, dtype=np.float64)[user]
    )
    w = w * decay(ts, ref, config.half_life_days)
    if np.isfinite(config.half_life_events) and config.half_life_events > 0 and len(w):
        w = w * np.exp2(-recency_rank(user, ts, n_users) / config.half_life_events)
    return w


def recency_rank(user: NDArray[np.integer], ts: NDArray[np.float64], n_users: int) -> NDArray[np.float64]:
    """Per event, how many of the same user's events come after it, float64[n] (0 = most recent).

    Order is by time, ties broken by position in the arrays (later position = more recent).
    """
    pos = np.arange(len(user))
    order = np.lexsort((pos, ts, user))
    counts = np.bincount(user, minlength=n_users)
    ends = np.cumsum(counts)
    rank = np.empty(len(user), dtype=np.float64)
    rank[order] = ends[user[order]] - 1 - np.arange(len(user))
    return rank


def _aggregate(
    user: NDArray[np.integer], item: NDArray[np.integer], w: NDArray[np.float64], shape: tuple[int, int],
    binary: bool = False,
) -> sp.csr_matrix:
    summed = sp.csr_matrix((w, (user, item)), shape=shape, dtype=np.float64)  # duplicates are summed
    summed.data = (summed.data > 0).astype(np.float64) if binary else np.log1p(np.maximum(summed.data, 0.0))
    summed.eliminate_zeros()
    return summed.astype(np.float32)


def build_interactions(
    log: EventLog,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    half_life_days: float = 90.0,
    now: float | None = None,
    rating_centering: bool = True,
    rating_scale: float = 0.5,
) -> sp.csr_matrix:
    """Weighted user-item interaction matrix.

    Parameters
    ----------
    log : EventLog with n events; events with item == -1 are ignored.
    weights : per event type weight (see InteractionConfig).
    half_life_days : time decay half-life; `now` is the reference time (default: the last event).

    Returns
    -------
    csr_matrix float32[n_users, n_items], entries log1p(net positive decayed weight) > 0.
    """
    config = InteractionConfig(
        weights=weights, half_life_days=half_life_days, rating_centering=rating_centering,
        rating_scale=rating_scale,
    )
    return interactions(log, config, now)


def interactions(
    log: EventLog, config: InteractionConfig, now: float | NDArray[np.float64] | None = None
) -> sp.csr_matrix:
    """`build_interactions` driven by an InteractionConfig; float32[n_users, n_items].

    `now` may be float64[n_users]: each user's own reference time. Validation uses each user's last
    training event, i.e. the moment that user would be asking for recommendations.
    """
    has_item = log.item >= 0
    if now is None:
        now = float(log.ts.max()) if len(log) else 0.0
    user, item = log.user[has_item], log.item[has_item]
    w = event_weights(
        user, log.type[has_item], log.value[has_item], log.ts[has_item], log.n_users, now, config
    )
    return _aggregate(user, item, w, (log.n_users, log.n_items), config.binary)


def history_weights(
    item: Sequence[int],
    type_code: Sequence[int],
    value: Sequence[float],
    ts: Sequence[float],
    now: float,
    config: InteractionConfig,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """One user's recent events -> (item indices int32[h], strengths float32[h]), strongest first.

    The per-row computation of `interactions` (`event_weights` + `_aggregate` for a single user,
    summing in the same order), so serving weighs a history as the batch validation does. `value` is
    NaN where an event has none. Events with item < 0 and items with no net positive evidence are
    dropped. Plain Python: it runs per request on some 25 events, where numpy's per-call cost made
    the vectorised version take 40 % more time inside a request.
    """
    kept = [k for k, i in enumerate(item) if i >= 0]
    if not kept:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    items = [item[k] for k in kept]
    stamps = [ts[k] for k in kept]
    table = _type_weight_table(config.weights).tolist()
    w = [table[type_code[k]] for k in kept]
    values = np.asarray(value, dtype=np.float32).tolist()  # as the event log holds them
    rating = TYPE_CODE["rating"]
    rated = [(j, values[k]) for j, k in enumerate(kept) if type_code[k] == rating and math.isfinite(values[k])]
    if rated:
        # the user's mean rating, summed in order as np.bincount does for the whole log
        centre = sum(r for _, r in rated) / len(rated) if config.rating_centering else config.rating_midpoint
        for j, r in rated:
            w[j] = w[j] + config.rating_scale * (r - centre) if r >= config.rating_threshold else 0.0
    if config.value_weighted:  # quantities and counts, as `event_weights` weighs them
        for j, k in enumerate(kept):
            v = values[k]
            if type_code[k] != rating and math.isfinite(v) and v > 0:
                w[j] = w[j] * v
    days = config.half_life_days
    if math.isfinite(days) and days > 0:  # `decay`, event by event
        w = [wj * math.exp2(-(max(now - t, 0.0) / SECONDS_PER_DAY) / days) for wj, t in zip(w, stamps, strict=True)]
    per_event = config.half_life_events
    if math.isfinite(per_event) and per_event > 0:
        # `recency_rank`: 0 for the latest event; among equal times the later one in the list is newer
        n = len(w)
        for back, j in enumerate(sorted(range(n), key=stamps.__getitem__)):  # a stable sort
            w[j] = w[j] * math.exp2(-float(n - 1 - back) / per_event)
    summed: dict[int, float] = {}
    for i, wj in zip(items, w, strict=True):
        summed[i] = summed.get(i, 0.0) + wj
    distinct = sorted(summed)
    strength = array("f", [math.log1p(max(summed[i], 0.0)) for i in distinct])  # float32, as `_aggregate`
    # strongest first; equal strengths: lower item first
    ranked = sorted((-s, i) for i, s in zip(distinct, strength, strict=True) if s > 0)
    return (np.array([i for _, i in ranked], dtype=np.int32),
            np.array([-s for s, _ in ranked], dtype=np.float32))


def ratings_matrix(log: EventLog) -> sp.csr_matrix:
    """Mean explicit rating per (user, item) from `rating` events, float32[n_users, n_items].

    Input for user-user Pearson; shops without ratings pass the interaction matrix instead.
    """
    mask = (log.type == TYPE_CODE["rating"]) & np.isfinite(log.value) & (log.item >= 0)
    u, i, r = log.user[mask], log.item[mask], log.value[mask].astype(np.float64)
    shape = (log.n_users, log.n_items)
    sums = sp.csr_matrix((r, (u, i)), shape=shape)
    counts = sp.csr_matrix((np.ones_like(r), (u, i)), shape=shape)
    sums.sort_indices()
    counts.sort_indices()
    out = sums.copy()
    out.data = sums.data / counts.data
    return out.astype(np.float32)
