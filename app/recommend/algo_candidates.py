"""Validation scoring on each user's candidate items only, so it scales with the catalog.

`algo_blend.combine` + `top_n` score a block of users against every item: 20 trials x 20k users x
100k items would take hours. Every item a user's history does not reach through the CF or content
neighbours, and that is not among the `n_popular` most popular, scores -inf anyway. This module keeps
only the reached and popular items of each user (a few thousand at most) in a CSR layout and computes
the very same float32 totals there, so the metrics equal those of the dense path up to ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_blend import (
    HybridConfig,
    _alpha,
    _row_max,
    rank_keys,
    ranked_items,
    sources,
    top_popular,
)
from app.recommend.algo_packing import packing_runs

_PACKED_CELLS = 1 << 22  # rows x width of one packed or dense block (16 MB of float32, 32 MB of rank keys)
#: Users with at most this many candidates are packed together whatever their counts (about a top-n's n:
#: the blocks are computed once for every n a validation asks for).
_NARROW_ROW = 32
#: Above this share of (user, item) cells reached, candidates are gathered from dense blocks.
DENSE_SHARE = 0.2


def _canonical(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float64)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def _keys(m: sp.csr_matrix) -> NDArray[np.int64]:
    """row * n_cols + col of every stored entry, ascending for a canonical matrix."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return np.asarray(rows * m.shape[1] + m.indices, dtype=np.int64)


def _aligned(m: sp.csr_matrix, keys: NDArray[np.int64]) -> NDArray[np.float64]:
    """m's values on the entries `keys` (a superset of m's structure), zero elsewhere."""
    out = np.zeros(len(keys))
    out[_positions(keys, _keys(m))] = m.data
    return out


def _positions(keys: NDArray[np.int64], sub: NDArray[np.int64]) -> NDArray[np.intp]:
    """Where in `keys` (ascending, distinct) each of `sub` (ascending, distinct, all in `keys`) is.

    A stable sort of the two runs side by side is one linear merge (timsort finds the runs); each of
    `sub` lands just after its equal in `keys`. 1.4-1.7x faster than a binary search per key (30M and
    6M keys), which took 14 s of the model choice's CPU at 1M shoppers x 100k items."""
    merged = np.argsort(np.concatenate([keys, sub]), kind="stable")
    return np.flatnonzero(merged >= len(keys)) - np.arange(len(sub)) - 1


def _normalised(raw: sp.csr_matrix, keys: NDArray[np.int64]) -> NDArray[np.float32]:
    """raw / max |raw| per row (over the whole row, excluded items included, as `sources` does)."""
    dense_max = np.ones(raw.shape[0])
    has = np.diff(raw.indptr) > 0
    if raw.nnz:
        starts = raw.indptr[:-1][has]
        hi = np.maximum.reduceat(raw.data, starts)
        lo = np.minimum.reduceat(raw.data, starts)
        # a stored row also holds implicit zeros unless it is full: they count in the dense max
        full = np.diff(raw.indptr)[has] == raw.shape[1]
        hi = np.where(full, hi, np.maximum(hi, 0.0))
        lo = np.where(full, lo, np.minimum(lo, 0.0))
        dense_max[has] = _row_max(np.stack([hi, lo], axis=1)).ravel()
    rows = keys // raw.shape[1]
    return np.asarray(_aligned(raw, keys) / dense_max[rows], dtype=np.float32)


@dataclass(frozen=True)
class Candidates:
    """Normalised CF and content scores of b users on their candidate items (CSR layout).

    indptr int64[b + 1]; items int32[nnz], ascending within a row; cf, content float32[nnz] (the
    `Sources` arrays at those entries). Candidates: reached by CF or content, or among `popular`,
    and not blocked.
    """

    indptr: NDArray[np.int64]
    items: NDArray[np.int32]
    cf: NDArray[np.float32]
    content: NDArray[np.float32]

    @staticmethod
    def build(
        cf_raw: sp.spmatrix, ct_raw: sp.spmatrix, popular: NDArray[np.integer], blocked: sp.spmatrix
    ) -> Candidates:
        """cf_raw, ct_raw: history @ S, csr [b, n_items]; popular: item indices every user may get;
        blocked: csr bool [b, n_items], never recommended (seen items)."""
        cf_raw, ct_raw = sp.csr_matrix(cf_raw), sp.csr_matrix(ct_raw)
        b, n_items = cf_raw.shape
        if cf_raw.nnz + ct_raw.nnz > DENSE_SHARE * b * n_items:
            return Candidates._build_dense(cf_raw, ct_raw, popular, sp.csr_matrix(blocked))
        cf_raw, ct_raw = _canonical(cf_raw), _canonical(ct_raw)
        popular = np.sort(np.asarray(popular, dtype=np.int64))
        pop = sp.csr_matrix(
            (np.ones(b * len(popular)), np.tile(popular, b), np.arange(b + 1, dtype=np.int64) * len(popular)),
            shape=(b, n_items),
        )
        union = _canonical(abs(cf_raw) + abs(ct_raw) + pop)  # positive terms: no entry cancels out
        keys = _keys(union)
        cf, content = _normalised(cf_raw, keys), _normalised(ct_raw, keys)
        block_keys = _keys(_canonical(blocked))
        at = np.minimum(np.searchsorted(block_keys, keys), max(len(block_keys) - 1, 0))
        keep = ~(block_keys[at] == keys) if len(block_keys) else np.ones(len(keys), dtype=bool)
        rows = keys[keep] // n_items
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=b))]).astype(np.int64)
        return Candidates(indptr, (keys[keep] % n_items).astype(np.int32), cf[keep], content[keep])

    @staticmethod
    def _build_dense(
        cf_raw: sp.csr_matrix, ct_raw: sp.csr_matrix, popular: NDArray[np.integer], blocked: sp.csr_matrix
    ) -> Candidates:
        """`build` through dense row blocks: when most items are reached anyway (small catalogs),
        the dense arithmetic of `sources` is faster than sorting sparse structures."""
        b, n_items = cf_raw.shape
        step = max(1, _PACKED_CELLS // max(1, n_items))
        counts, items, cf, content = [], [], [], []
        for start in range(0, b, step):
            stop = min(b, start + step)
            src = sources(cf_raw[start:stop].toarray(), ct_raw[start:stop].toarray(), blocked[start:stop])
            candidate = src.reached
            candidate[:, popular] = True
            if src.blocked is not None:
                candidate &= ~src.blocked
            rows, cols = np.nonzero(candidate)
            counts.append(np.bincount(rows, minlength=stop - start))
            items.append(cols.astype(np.int32))
            cf.append(src.cf[rows, cols])
            content.append(src.content[rows, cols])
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
        return Candidates(indptr, np.concatenate(items), np.concatenate(cf), np.concatenate(content))

    def totals(
        self, evidence: NDArray[np.floating], popularity: NDArray[np.floating], config: HybridConfig
    ) -> NDArray[np.float32]:
        """`combine`'s totals at the candidate entries, float32[nnz]."""
        a = _alpha(config.alpha, evidence, config.evidence_c).astype(np.float32)[self.items]
        total = self.cf * a
        total += self.content * (np.float32(1.0) - a)
        pop_max = float(popularity.max()) if popularity.size else 0.0
        if config.pop_weight and pop_max > 0:
            total += (config.pop_weight / pop_max * popularity.astype(np.float64)).astype(np.float32)[self.items]
        return total

    @cached_property
    def _blocks(self) -> list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.int64], int]]:
        """Packing of the rows into dense [rows, width] blocks, computed once for all trials:
        (rows, slot, pos, entry, width), rows of similar candidate counts together (`packing_runs`)."""
        counts = np.diff(self.indptr)
        nonempty = np.flatnonzero(counts)  # users without candidates stay -1
        blocks = []
        for run in packing_runs(counts[nonempty], _NARROW_ROW, _PACKED_CELLS):
            rows = nonempty[run]
            lengths = counts[rows]
            slot = np.repeat(np.arange(len(rows)), lengths)
            pos = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(np.r_[0, lengths[:-1]]), lengths)
            blocks.append((rows, slot, pos, self.indptr[rows][slot] + pos, int(lengths.max())))
        return blocks

    def top_n(self, total: NDArray[np.float32], n: int) -> NDArray[np.int32]:
        """Top-n items per user, int32[b, n], best first, ties to the lower item index (as serving's
        stable sort: also where ties straddle the n-th place, whatever users are packed beside), -1 padded."""
        out = np.full((len(self.indptr) - 1, n), -1, dtype=np.int32)
        keys = rank_keys(total, self.items)
        for rows, slot, pos, entry, width in self._blocks:
            packed = np.full((len(rows), width), np.iinfo(np.int64).min, dtype=np.int64)
            packed[slot, pos] = keys[entry]
            kk = min(n, width)
            best = np.sort(np.partition(packed, width - kk, axis=1)[:, width - kk :], axis=1)[:, ::-1]
            out[rows, :kk] = ranked_items(best)
        return out


def popular_top_n(
    popularity: NDArray[np.floating], config: HybridConfig, blocked: sp.spmatrix, n: int
) -> NDArray[np.int32]:
    """Top-n per user when nothing is reached (no CF, no content): the popular candidates in
    `combine`'s order (total descending, then item index), minus each user's blocked items.

    blocked: csr bool [b, n_items]. Returns int32[b, n], -1 padded.
    """
    blocked = _canonical(blocked)
    b, n_items = blocked.shape
    cands = top_popular(popularity, config.n_popular)
    pop_max = float(popularity.max()) if popularity.size else 0.0
    total = np.zeros(len(cands), dtype=np.float32)
    if config.pop_weight and pop_max > 0:
        total += (config.pop_weight / pop_max * popularity[cands].astype(np.float64)).astype(np.float32)
    ranked = cands[np.lexsort((cands, -total))]
    out = np.full((b, n), -1, dtype=np.int32)
    counts = np.diff(blocked.indptr)
    step = max(1, _PACKED_CELLS // max(1, n + int(counts.max(initial=0))))
    for start in range(0, b, step):
        stop = min(b, start + step)
        width = min(len(ranked), n + int(counts[start:stop].max(initial=0)))
        position = np.full(n_items, -1, dtype=np.int64)
        position[ranked[:width]] = np.arange(width)
        part = blocked[start:stop]
        slot = np.repeat(np.arange(stop - start), np.diff(part.indptr))
        at = position[part.indices]
        taken = np.zeros((stop - start, width), dtype=bool)
        taken[slot[at >= 0], at[at >= 0]] = True
        free = ~taken
        rank = np.cumsum(free, axis=1)
        r, c = np.nonzero(free & (rank <= n))
        out[start + r, rank[r, c] - 1] = ranked[c]
    return out
