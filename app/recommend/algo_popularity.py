"""Popularity signals: decayed overall popularity, per-category top lists, and trend."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.recommend.algo_matrix import SECONDS_PER_DAY, InteractionConfig, event_weights, interactions


def popularity(log: EventLog, half_life_days: float, now: float | None = None,
               config: InteractionConfig | None = None) -> NDArray[np.float32]:
    """Recency-weighted popularity, float32[n_items].

    Sum over users of their damped, decayed strength for the item: the column sums of the interaction
    matrix built with `half_life_days` (usually shorter than the CF half-life: "popular lately").
    """
    cfg = replace(config or InteractionConfig(), half_life_days=half_life_days, half_life_events=float("inf"))
    x = interactions(log, cfg, now)
    return np.asarray(x.sum(axis=0), dtype=np.float32).ravel()


def item_evidence(x: sp.csr_matrix) -> NDArray[np.float32]:
    """Number of users with positive evidence per item, float32[n_items] (drives the adaptive alpha)."""
    return np.asarray(np.diff(sp.csc_matrix(x).indptr), dtype=np.float32)


def category_top_items(
    scores: NDArray[np.floating], item_category: sp.csr_matrix, n: int = 100,
    eligible: NDArray[np.bool_] | None = None,
) -> list[NDArray[np.int32]]:
    """The n best-scoring items of each category.

    Parameters
    ----------
    scores : float[n_items], e.g. `popularity(...)`.
    item_category : csr_matrix [n_items, n_categories], non-zero where the item is in the category.
    eligible : bool[n_items], optional; ineligible items (unavailable, deleted) are left out.

    Returns
    -------
    list of n_categories int32 arrays (best first, at most n each).
    """
    coo = sp.coo_matrix(item_category)
    items, cats = coo.row, coo.col
    if eligible is not None:
        keep = eligible[items]
        items, cats = items[keep], cats[keep]
    order = np.lexsort((items, -scores[items], cats))  # by category, then score desc, then index
    items, cats = items[order], cats[order]
    starts = np.searchsorted(cats, np.arange(item_category.shape[1]))
    rank = np.arange(len(cats)) - starts[cats]
    keep = rank < n
    bounds = np.searchsorted(cats[keep], np.arange(1, item_category.shape[1]))
    return [part.astype(np.int32) for part in np.split(items[keep], bounds)]


def trend(log: EventLog, now: float | None = None, window_days: float = 7.0) -> NDArray[np.float32]:
    """Trend z-score per item, float32[n_items].

    recent = positive-weight events in (now - w, now], previous = in (now - 2w, now - w];
    trend = (recent - previous) / sqrt(recent + previous + 1), a Poisson-style z-score so that one
    extra event on a cold item does not outrank a real surge on a busy one.
    """
    has_item = log.item >= 0
    if now is None:
        now = float(log.ts.max()) if len(log) else 0.0
    w = event_weights(log.user[has_item], log.type[has_item], log.value[has_item], log.ts[has_item],
                      log.n_users, now, InteractionConfig(half_life_days=float("inf")))
    item, ts = log.item[has_item], log.ts[has_item]
    age = (now - ts) / SECONDS_PER_DAY
    positive = w > 0
    recent_mask = positive & (age >= 0) & (age < window_days)
    prev_mask = positive & (age >= window_days) & (age < 2 * window_days)
    recent = np.bincount(item[recent_mask], minlength=log.n_items).astype(np.float64)
    prev = np.bincount(item[prev_mask], minlength=log.n_items).astype(np.float64)
    return ((recent - prev) / np.sqrt(recent + prev + 1.0)).astype(np.float32)
