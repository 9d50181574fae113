"""Sequential co-occurrence ("what people engage with next") and the served CF neighbour blend.

Item-item CF on the user x item matrix forgets order: two items a user touched a year apart count as
much as two viewed a minute apart. Shoppers browse, and raters rate, in runs of related items, so the
items that *follow* item i in other users' event streams are strong candidates for a user whose most
recent event is i. This module counts those forward transitions within a window and turns them into
`Neighbours`, which are blended into the CF neighbours (weight chosen by validation), so serving is
unchanged: still one top-k list per item.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.recommend.algo_matrix import SECONDS_PER_DAY, InteractionConfig, _type_weight_table
from app.recommend.algo_neighbours import DEFAULT_BLOCK_BYTES, Neighbours, blockwise_topk, merge_neighbours
from app.recommend.algo_similarity import CFConfig, cf_neighbours


def user_sequences(log: EventLog, config: InteractionConfig | None = None) -> NDArray[np.intp]:
    """Event indices of positively weighted item events, ordered by (user, time, event order), intp[m]."""
    table = _type_weight_table((config or InteractionConfig()).weights)
    keep = np.flatnonzero((log.item >= 0) & (table[log.type.astype(np.intp)] > 0))
    return keep[np.lexsort((keep, log.ts[keep], log.user[keep]))]


def transition_counts(
    log: EventLog, window: int = 30, max_gap_days: float = 1.0, config: InteractionConfig | None = None
) -> sp.csr_matrix:
    """Forward co-occurrence counts T, csr float64[n_items, n_items].

    T[i, j] = number of (user, position) pairs where j comes 1..`window` events after i in the user's
    stream, at most `max_gap_days` later. Immediate repeats are collapsed first (a b b c counts as
    a b c) and an item never transitions to itself. One sparse
    accumulation per offset, so memory is O(nnz(T) + n_events) whatever the window.
    """
    order = user_sequences(log, config)
    u, it = log.user[order], log.item[order]
    fresh = np.ones(len(order), dtype=bool)
    fresh[1:] = (u[1:] != u[:-1]) | (it[1:] != it[:-1])  # collapse immediate repeats (a b b c)
    order, u, it = order[fresh], u[fresh], it[fresh]
    t = log.ts[order]
    max_gap = max_gap_days * SECONDS_PER_DAY
    n = log.n_items
    counts: sp.csr_matrix | None = None
    rows: list[NDArray[np.int32]] = []
    cols: list[NDArray[np.int32]] = []
    pending = 0
    for d in range(1, min(window, len(order) - 1) + 1):
        pair = (u[d:] == u[:-d]) & (t[d:] - t[:-d] <= max_gap) & (it[d:] != it[:-d])
        if not pair.any():
            break
        rows.append(it[:-d][pair])
        cols.append(it[d:][pair])
        pending += int(pair.sum())
        if pending >= _FLUSH_PAIRS:
            part = _pairs_to_csr(rows, cols, n)
            counts = part if counts is None else counts + part
            rows, cols, pending = [], [], 0
    if rows:
        part = _pairs_to_csr(rows, cols, n)
        counts = part if counts is None else counts + part
    return sp.csr_matrix((n, n), dtype=np.float64) if counts is None else counts


_FLUSH_PAIRS = 20_000_000  # bound the pair buffer (~160 MB) on big logs


def _pairs_to_csr(rows: list[NDArray[np.int32]], cols: list[NDArray[np.int32]], n: int) -> sp.csr_matrix:
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))  # duplicates are summed


def sequence_neighbours(
    log: EventLog,
    k: int = 100,
    window: int = 30,
    max_gap_days: float = 1.0,
    config: InteractionConfig | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Neighbours:
    """Top-k "next item" neighbours per item.

    sim(i, j) = T[i, j] / sqrt(out(i) * in(j)), the cosine of the directed transition counts
    (out(i) = transitions leaving i, in(j) = transitions arriving at j), so a globally popular
    follower does not dominate every list.

    Returns
    -------
    Neighbours over items, int32[n_items, k]; row i lists items that follow i.
    """
    counts = transition_counts(log, window, max_gap_days, config)
    inn = np.asarray(counts.sum(axis=0)).ravel()
    norm = transition_cosine(counts, inn)
    n = log.n_items
    return blockwise_topk(n, n, k, lambda s, e: norm[s:e], block_bytes=block_bytes)


def transition_cosine(counts: sp.csr_matrix, inn: NDArray[np.float64]) -> sp.csr_matrix:
    """Rows of T (whole rows: their sums are out(i)) -> the same rows of T[i, j] / sqrt(out(i) in(j)),
    `inn` the column sums of the whole of T."""
    out = np.asarray(counts.sum(axis=1)).ravel()
    inv_out = 1.0 / np.sqrt(np.maximum(out, 1e-12))
    inv_in = 1.0 / np.sqrt(np.maximum(inn, 1e-12))
    return sp.csr_matrix(sp.diags(inv_out) @ counts @ sp.diags(inv_in))


def collaborative_neighbours(
    log: EventLog, x: sp.csr_matrix, config: CFConfig, interaction: InteractionConfig | None = None
) -> Neighbours:
    """The served CF neighbours: the configured variant on `x` blended with sequence neighbours.

    Parameters
    ----------
    log : the event log `x` was built from (for event order).
    x : csr float[n_users, n_items] interaction strengths.
    """
    base = cf_neighbours(x, config)
    if config.sequence_weight <= 0:
        return base
    seq = sequence_neighbours(
        log, config.k, config.sequence_window, config.sequence_max_gap_days, interaction
    )
    return merge_neighbours(base, seq, config.sequence_weight, config.k)
