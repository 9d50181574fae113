"""Top-k neighbour lists: the one output shape every similarity algorithm produces.

Serving reads the same two arrays whatever built them (cosine, EASE, RP3beta, content, Pearson), so
the scorer never needs to know which variant won validation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_packing import packing_runs

#: Rows of a similarity block materialised at once are capped to about this many bytes (float32).
DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024
#: Blocks computed at once (each holds one block of memory); the worker box has two cores.
BLOCK_THREADS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Neighbours:
    """Top-k neighbours per row entity (item or user).

    indices: int32[n, k]   neighbour index, -1 padded at the end of a row
    scores:  float32[n, k] similarity, sorted descending per row, 0 where the index is -1

    Invariants: a row never lists itself; no zero scores are stored. Scores are positive except for
    signed variants (EASE), which keep the k largest weights by magnitude, negatives included.
    """

    indices: NDArray[np.int32]
    scores: NDArray[np.float32]

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def to_csr(self, n_cols: int | None = None) -> sp.csr_matrix:
        """The neighbour lists as a sparse matrix S, float32[n, n_cols], S[i, j] = score of j in row i."""
        n_cols = self.n if n_cols is None else n_cols
        valid = self.indices >= 0  # -1 padding sits at the end of each row: row-major order is CSR order
        indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int64)
        return sp.csr_matrix(
            (self.scores[valid].astype(np.float32), self.indices[valid], indptr), shape=(self.n, n_cols)
        )

    @staticmethod
    def empty(n: int, k: int) -> Neighbours:
        return Neighbours(np.full((n, k), -1, dtype=np.int32), np.zeros((n, k), dtype=np.float32))

    def scale(self) -> float:
        """Typical strength of a row: the mean over non-empty rows of the largest |score| (1 if none)."""
        top = np.abs(self.scores).max(axis=1) if self.k else np.zeros(self.n)
        top = top[top > 0]
        return float(top.mean()) if top.size else 1.0


def merge_neighbours(
    a: Neighbours, b: Neighbours, weight_b: float, k: int, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Neighbours:
    """Top-k of (1 - weight_b) * A / scale(A) + weight_b * B / scale(B), row by row.

    Both inputs cover the same n entities; each is divided by its `scale()` so that the weight means
    the same thing whatever the raw similarity units. Signed entries are kept by magnitude.
    """
    if weight_b <= 0:
        return a
    if weight_b >= 1:
        return b
    n = a.n
    m = sp.csr_matrix(((1.0 - weight_b) / a.scale()) * a.to_csr(n) + (weight_b / b.scale()) * b.to_csr(n))
    return topk_sparse(m, k, signed=True)


def topk_sparse(
    m: sp.csr_matrix, k: int, signed: bool = False, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Neighbours:
    """Top-k stored entries per row of a sparse square matrix, as `Neighbours` (self dropped)."""
    m = sp.csr_matrix(m)
    n = m.shape[0]
    return blockwise_topk(n, n, k, lambda s, e: m[s:e], block_bytes=block_bytes, signed=signed)


def topk_rows(
    block: sp.spmatrix, k: int, start: int, signed: bool = False
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Top-k of a sparse block of rows `start`.. of a square item-item matrix, each row's own item
    dropped: what `blockwise_topk` keeps of one block, for blocks summed elsewhere (`app.distributed`)."""
    block = sp.csr_matrix(block)
    return _topk_packed(block, k, np.arange(start, start + block.shape[0]), signed)


def _topk_packed(
    block: sp.csr_matrix, k: int, row_ids: NDArray[np.integer] | None, signed: bool
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """`topk_dense` on a sparse block: each row's stored entries packed into [rows, widest row], so the
    cost follows nnz instead of b x n_cols (item-item products are sparse at scale).

    Rows are packed in runs of similar width (`packing_runs`): packed all at once, one popular item's
    row set the width of every row in its block, and a product block of the scale benchmark held 14x
    more padding than entries; the top-k spent 3x the time of the product that made the block. Only
    a rank key is packed (0: never kept); scores and columns are read back from the kept entries.
    The block must not hold duplicate entries (products and slices never do); its rows need not be
    sorted, so the sort that `sum_duplicates` would do (a third of the time at 100k items) is skipped.
    """
    block = sp.csr_matrix(block)
    counts = np.diff(block.indptr)
    key = np.abs(block.data) if signed else np.maximum(block.data, 0)
    key[~np.isfinite(key)] = 0
    if row_ids is not None:
        key[block.indices == np.repeat(np.asarray(row_ids), counts)] = 0
    indices = np.full((block.shape[0], k), -1, dtype=np.int32)
    scores = np.zeros((block.shape[0], k), dtype=np.float32)
    for rows in packing_runs(counts, k, DEFAULT_BLOCK_BYTES // 8):
        entries = _top_entries(block.indptr[rows], counts[rows], key, block.data, block.indices, k)
        kept = entries >= 0
        indices[rows, : entries.shape[1]] = np.where(kept, block.indices[entries], -1)
        scores[rows, : entries.shape[1]] = np.where(kept, block.data[entries], 0)
    return indices, scores


def _top_entries(
    starts: NDArray[np.integer], lengths: NDArray[np.integer], key: NDArray[np.floating],
    data: NDArray[np.floating], columns: NDArray[np.integer], k: int,
) -> NDArray[np.int64]:
    """Entry indices (into key, data and columns) of the top min(k, widest) of each row, int64[rows, <= k]:
    rows stored at [starts[r], starts[r] + lengths[r]), ranked by key (> 0 kept, 0 never), kept entries
    by data descending, ties to the lower column (as `topk_dense`: the order of what a row keeps does not
    depend on the order a product stored it in, nor on the rows packed beside it); -1 where nothing is kept."""
    b = len(starts)
    width = max(1, int(lengths.max(initial=0)))
    total = int(lengths.sum())
    if total == 0:
        return np.zeros((b, 0), dtype=np.int64)
    row_start = np.cumsum(lengths) - lengths
    pos = np.arange(total) - np.repeat(row_start, lengths)
    packed = np.zeros(b * width, dtype=key.dtype)
    # flat indexing: fancy assignment and `take` on one index array are ~2x faster than 2-d ones
    packed[np.repeat(np.arange(b) * width, lengths) + pos] = key[np.repeat(starts, lengths) + pos]
    kk = min(k, width)
    if kk < width:
        part = np.argpartition(packed.reshape(b, width), width - kk, axis=1)[:, width - kk :]
    else:
        part = np.broadcast_to(np.arange(width), (b, width))
    keep = packed.take(part + (np.arange(b) * width)[:, None]) > 0
    entries = np.where(keep, starts[:, None] + part, 0)
    order = np.lexsort((columns.take(entries), -data.take(entries), ~keep), axis=1)
    return np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(entries, order, axis=1), -1)


def topk_dense(
    block: NDArray[np.floating], k: int, row_ids: NDArray[np.integer] | None = None, signed: bool = False
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Top-k columns per row of a dense block, sorted descending, self dropped.

    Parameters
    ----------
    block : float[b, n]
        Similarities of b rows against all n columns. Modified in place (self entries cleared).
    k : int
        Neighbours kept per row.
    row_ids : int[b], optional
        Column index of each row's own entity, excluded from its list (None: nothing excluded).
    signed : bool
        False: keep the k largest strictly positive values. True: keep the k largest by magnitude,
        negatives included (EASE weights: the negative ones carry real information), zeros dropped.

    Returns
    -------
    indices : int32[b, k], -1 padded at the end of each row
    scores : float32[b, k], kept entries sorted descending, 0 where padded
    """
    b, n = block.shape
    if row_ids is not None:
        block[np.arange(b), row_ids] = 0.0 if signed else -np.inf
    block[~np.isfinite(block)] = 0.0 if signed else -np.inf
    key = -np.abs(block) if signed else -block
    kk = min(k, n)
    full = np.broadcast_to(np.arange(n), (b, n))
    part = np.argpartition(key, kk - 1, axis=1)[:, :kk] if kk < n else full.copy()
    part_scores = np.take_along_axis(block, part, axis=1)
    keep = part_scores != 0 if signed else part_scores > 0
    # kept entries first, by score descending, ties to the lower column (as `_top_entries`); dropped last
    order = np.lexsort((part, -part_scores, ~keep), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int32)
    sc = np.take_along_axis(part_scores, order, axis=1)
    keep = np.take_along_axis(keep, order, axis=1)
    indices = np.full((b, k), -1, dtype=np.int32)
    scores = np.zeros((b, k), dtype=np.float32)
    indices[:, :kk] = np.where(keep, idx, -1)
    scores[:, :kk] = np.where(keep, sc, 0).astype(np.float32)
    return indices, scores


def blockwise_topk(
    n_rows: int,
    n_cols: int,
    k: int,
    block_fn: Callable[[int, int], NDArray[np.floating] | sp.spmatrix],
    exclude_self: bool = True,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    signed: bool = False,
    row_ids: NDArray[np.integer] | None = None,
) -> Neighbours:
    """Run `block_fn(start, stop)` -> float[stop-start, n_cols] over row blocks and keep top-k.

    A block may be dense or sparse (sparse blocks are reduced over their stored entries only).
    Peak memory is about one block of `block_bytes` plus the k-wide outputs, whatever n_rows is.
    With `exclude_self`, row r never lists its own column: r, or `row_ids[r]` when the rows are a
    subset of the column entities.
    """
    rows_per_block = max(1, block_bytes // max(1, 8 * n_cols))
    out = Neighbours.empty(n_rows, k)

    def run(start: int) -> None:
        stop = min(n_rows, start + rows_per_block)
        block = block_fn(start, stop)
        ids = None
        if exclude_self:
            ids = np.arange(start, stop) if row_ids is None else np.asarray(row_ids)[start:stop]
        if sp.issparse(block):
            idx, sc = _topk_packed(sp.csr_matrix(block), k, ids, signed)
        else:
            idx, sc = topk_dense(np.asarray(block), k, ids, signed)
        out.indices[start:stop] = idx
        out.scores[start:stop] = sc

    starts = range(0, n_rows, rows_per_block)
    if len(starts) < 2 or BLOCK_THREADS < 2:
        for start in starts:
            run(start)
        return out
    # scipy's sparse products and numpy's partitions release the GIL: blocks overlap on the cores
    with ThreadPoolExecutor(max_workers=BLOCK_THREADS) as pool:
        for _ in pool.map(run, starts):
            pass
    return out
