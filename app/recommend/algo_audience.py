"""Who will buy this: per item, the shoppers with the strongest predicted affinity, from the CF model.

The recommender scores a shopper u for a candidate item j as sum over history items h of
w_uh * S[h, j] (`algo_blend`). Read the other way round, column j of

    A = H @ S                         float[n_users, n_items]

ranks every shopper for item j: H is the history strengths serving uses (`FittedModel.history`), S the
served item-item rows, so the audience follows whichever CF variant validation chose (cosine, EASE,
RP3beta, or the ALS factor model, all served as item-item rows). An item with little evidence leans on
its content neighbours, as the blend does:

    S[:, j] = alpha_j * S_cf[:, j] / scale(S_cf) + (1 - alpha_j) * S_content[:, j] / scale(S_content)
    alpha_j = alpha * n_j / (n_j + evidence_c)          (n_j: shoppers with evidence for j)

Serving cannot compute a column of A: it needs every shopper's history. So the rebuild computes A^T a
block of items at a time and keeps the top n shoppers per item, buyers of the item apart (they are
excluded by default, and would otherwise crowd out the shoppers a campaign is for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_neighbours import Neighbours

#: The version's hashes (item id -> packed (user index, affinity) rows) an audience is published to and
#: read from: the shoppers who did not buy the item, and those who did.
PARTS = ("item_aud", "item_aud_buyers")
#: Product entries (user, item) materialised per block: bounds the build's memory (~16 bytes each).
BLOCK_ENTRIES = 4_000_000
#: Product entries over the whole catalog: bounds the build's time. On a large shop (1M shoppers, 100k
#: items, 10M events) the full product holds ~2*10^9 entries and took 300 s, half the rebuild's budget;
#: at this budget each item keeps only its strongest pointing items (`_strongest`) and it took 35 s.
MAX_WORK = 150_000_000


@dataclass(frozen=True)
class ItemAudiences:
    """Per item, shoppers ranked by affinity (user indices into the log's `user_ids`).

    others: Neighbours over items, int32/float32[n_items, n] the top n shoppers who did not buy the item
    buyers: Neighbours over items, int32/float32[n_items, n] the top n who did
    Scores are positive and sorted descending per row; ties break by user index.
    """

    others: Neighbours
    buyers: Neighbours


def item_weights(
    cf: sp.csr_matrix, content: sp.csr_matrix | None, evidence: NDArray[np.floating], alpha: float,
    evidence_c: float,
) -> sp.csr_matrix:
    """S of the module docstring, float32[n_items, n_items] (rows: history items, columns: targets)."""
    n = cf.shape[0]
    ev = np.asarray(evidence, dtype=np.float64)
    a = alpha * ev / (ev + evidence_c) if evidence_c > 0 else np.full(n, alpha)
    if content is None or content.nnz == 0:
        a = np.ones(n)
    out = sp.csr_matrix(cf, dtype=np.float64) @ sp.diags(a / _scale(cf))
    if content is not None and content.nnz:
        out = out + sp.csr_matrix(content, dtype=np.float64) @ sp.diags((1.0 - a) / _scale(content))
    return sp.csr_matrix(out, dtype=np.float32)


def _scale(m: sp.csr_matrix) -> float:
    """Typical row strength (mean of each non-empty row's largest |entry|), as `Neighbours.scale`."""
    m = sp.csr_matrix(m)
    if m.nnz == 0:
        return 1.0
    top = np.abs(m).max(axis=1).toarray().ravel()
    top = top[top > 0]
    return float(top.mean()) if top.size else 1.0


def item_audiences(
    history: sp.csr_matrix, weights: sp.csr_matrix, bought: sp.csr_matrix, n: int,
    block_entries: int = BLOCK_ENTRIES, max_work: int = MAX_WORK,
) -> ItemAudiences:
    """Top-n shoppers per item by affinity (A = history @ weights), non-buyers and buyers apart.

    Parameters
    ----------
    history : csr float[n_users, n_items] history strengths.
    weights : csr float[n_items, n_items] S (`item_weights`).
    bought : csr bool[n_users, n_items] who bought what (any value > 0 counts).
    n : shoppers kept per item and list.
    block_entries : items are processed in blocks whose product holds at most about this many
        entries (one item alone may exceed it); memory is O(block_entries + n_items * n).
    max_work : the product's entries over all items, at most about; above it each item is reached
        only from its m strongest history items, m as large as the budget allows (an approximation
        that drops the weakest, often negative, terms first).

    Only positive affinities are kept (EASE's negative weights make some shoppers unlikely, not an
    audience).
    """
    shoppers = item_shoppers(history)
    return audiences_from(audience_sources(weights, shoppers, max_work), history, bought, n, block_entries)


def item_shoppers(history: sp.csr_matrix) -> NDArray[np.int64]:
    """Shoppers with each item in their history, int64[n_items] (a sum over user shards)."""
    return np.bincount(sp.csr_matrix(history).indices, minlength=history.shape[1]).astype(np.int64)


def audience_sources(weights: sp.csr_matrix, shoppers: NDArray[np.int64], max_work: int = MAX_WORK) -> sp.csr_matrix:
    """Row j: the history items that point at j, cut to fit `max_work` (see `item_audiences`)."""
    return _strongest(sp.csr_matrix(weights.T, dtype=np.float32), shoppers, max_work)


def audiences_from(
    st: sp.csr_matrix, history: sp.csr_matrix, bought: sp.csr_matrix, n: int, block_entries: int = BLOCK_ENTRIES
) -> ItemAudiences:
    """`item_audiences` from its `audience_sources`, over the shoppers of `history` (all, or a shard's)."""
    n_items = st.shape[0]
    ht = sp.csr_matrix(history.T, dtype=np.float32)  # [n_items, n_users]
    bt = sp.csr_matrix(bought.T > 0, dtype=np.float32)
    shoppers = np.diff(ht.indptr).astype(np.int64)
    # an upper bound of each item's product row: the shoppers of every history item pointing at it
    bound = (st != 0).astype(np.int64) @ shoppers
    others, buyers = Neighbours.empty(n_items, n), Neighbours.empty(n_items, n)
    for start, stop in row_blocks(np.asarray(bound), block_entries):
        block = sp.csr_matrix(st[start:stop] @ ht)  # affinities [items, users]
        mine = sp.csr_matrix(block.multiply(bt[start:stop]))
        rest = sp.csr_matrix(block - mine)
        for out, part in ((others, rest), (buyers, mine)):
            out.indices[start:stop], out.scores[start:stop] = top_per_row(part, n)
    return ItemAudiences(others=others, buyers=buyers)


def merge_audiences(a: ItemAudiences, b: ItemAudiences, n: int) -> ItemAudiences:
    """The top n of two audiences over disjoint shoppers (user shards), ranked as `top_per_row` ranks:
    by score, ties by user index, so merged shards rank as the whole shop does."""
    def merge(x: Neighbours, y: Neighbours) -> Neighbours:
        indices = np.hstack([x.indices, y.indices])
        scores = np.hstack([x.scores, y.scores])
        valid = indices >= 0
        counts = valid.sum(axis=1)
        m = sp.csr_matrix((scores[valid], indices[valid], np.r_[0, np.cumsum(counts)]),
                          shape=(len(indices), int(indices.max(initial=0)) + 1))
        return Neighbours(*top_per_row(m, n))

    return ItemAudiences(others=merge(a.others, b.others), buyers=merge(a.buyers, b.buyers))


def _strongest(st: sp.csr_matrix, shoppers: NDArray[np.int64], max_work: int) -> sp.csr_matrix:
    """st with each row cut to its m largest entries, m the largest whose product bound fits
    `max_work` (st itself when it fits whole)."""
    st = sp.csr_matrix(st)
    st.eliminate_zeros()
    cost = shoppers[st.indices]  # what each entry adds to its row's product
    if int(cost.sum()) <= max_work:
        return st
    rows = np.repeat(np.arange(st.shape[0]), np.diff(st.indptr))
    order = np.lexsort((-st.data, rows))  # by row, strongest first
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - st.indptr[rows[order]]
    per_rank = np.bincount(rank, weights=cost, minlength=1)  # the product's entries each rank adds
    m = max(1, int(np.searchsorted(np.cumsum(per_rank), max_work, side="right")))
    keep = rank < m
    return sp.csr_matrix((st.data[keep], st.indices[keep], np.r_[0, np.cumsum(np.bincount(rows[keep],
                         minlength=st.shape[0]))]), shape=st.shape)


def row_blocks(bound: NDArray[np.int64], budget: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges whose bounds sum to at most `budget` (or a single row)."""
    n = len(bound)
    out: list[tuple[int, int]] = []
    ends = np.cumsum(bound)
    start = 0
    while start < n:
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + budget, side="right"))
        stop = max(stop, start + 1)
        out.append((start, min(stop, n)))
        start = stop
    return out


def top_per_row(m: sp.csr_matrix, n: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The n largest positive entries per row of m [b, cols], as int32/float32[b, n] (-1/0 padded),
    sorted by score descending then column ascending.

    Rows holding more than n entries are cut at their n-th largest value first (one partition each,
    O(nnz)); only what survives is sorted, so a block costs O(nnz + b n log n), not O(nnz log nnz).
    """
    m = sp.csr_matrix(m)
    b = m.shape[0]
    rows = np.repeat(np.arange(b), np.diff(m.indptr))
    cols, vals = m.indices, m.data
    keep = vals > 0
    counts = np.bincount(rows[keep], minlength=b)
    for r in np.flatnonzero(counts > n):  # the heavy rows only
        lo, hi = m.indptr[r], m.indptr[r + 1]
        seg = vals[lo:hi]
        positive = seg[seg > 0]
        cut = np.partition(positive, len(positive) - n)[len(positive) - n]
        keep[lo:hi] &= seg >= cut  # ties at the cut survive; the rank below trims them
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    take = rank < n
    indices = np.full((b, n), -1, dtype=np.int32)
    scores = np.zeros((b, n), dtype=np.float32)
    indices[rows[take], rank[take]] = cols[take]
    scores[rows[take], rank[take]] = vals[take]
    return indices, scores
