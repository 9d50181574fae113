"""User-user CF: Pearson correlation over co-rated items with significance weighting."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_neighbours import DEFAULT_BLOCK_BYTES, Neighbours, blockwise_topk

#: Above this fraction of co-rating pairs in a block, the block is computed densely.
DENSE_PAIR_FRACTION = 0.1


def pearson_user_neighbours(
    r: sp.csr_matrix, k: int = 50, gamma: float = 50.0, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Neighbours:
    """Top-k most correlated users per user (lookalikes).

    For users u, v with co-rated items I_uv (both have a stored entry):

        pearson(u, v) = sum_{i in I_uv} (r_ui - m_u)(r_vi - m_v)
                        / sqrt(sum_{i in I_uv} (r_ui - m_u)^2 * sum_{i in I_uv} (r_vi - m_v)^2)

    where m_u is user u's mean over ALL items u rated (the global per-user mean, as most
    implementations use), not the mean over I_uv. The result is multiplied by the significance weight
    min(|I_uv|, gamma) / gamma. Every sum is a sparse product restricted to the co-rated structure:
    numerator C C^T, left denominator (C o C) B^T, right denominator B (C o C)^T, |I_uv| = B B^T,
    with C the centred ratings and B their 0/1 pattern, all kept sparse (only pairs of users that
    share an item are ever materialised), in float32. The first and the last come out of one complex
    product, (C o C + iB) B^T. Pairs with a zero denominator score 0.

    Parameters
    ----------
    r : csr_matrix float[n_users, n_items]; stored entries are the observed ratings (or strengths).
    k : neighbours per user.  gamma : significance-weighting threshold (co-rated count).

    Returns
    -------
    Neighbours over users, indices int32[n_users, k], only positive weighted correlations.
    """
    r = sp.csr_matrix(r, dtype=np.float32)
    r.sum_duplicates()
    n_users = r.shape[0]
    counts = np.diff(r.indptr)
    means = (np.asarray(r.sum(axis=1), dtype=np.float64).ravel() / np.maximum(counts, 1)).astype(np.float32)
    centred = r.copy()
    centred.data = r.data - np.repeat(means, counts)  # explicit zeros kept: they still count as co-rated
    pattern = r.copy()
    pattern.data = np.ones_like(r.data)
    # (C o C) + iB: one complex product gives the left denominator (real) and |I_uv| (imaginary)
    sq_and_one = sp.csr_matrix(((centred.data**2 + 1j).astype(np.complex64), r.indices, r.indptr), shape=r.shape)
    sq_t = sp.csr_matrix(sp.csr_matrix((centred.data**2, r.indices, r.indptr), shape=r.shape).T)
    c_t = sp.csr_matrix(centred.T)
    b_t = sp.csr_matrix(pattern.T)

    def weighted(num: NDArray[np.float32], left: NDArray[np.float32], right: NDArray[np.float32],
                 n_co: NDArray[np.float32]) -> NDArray[np.float32]:
        denom = np.sqrt(left * right)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)
        return np.asarray(corr * (np.minimum(n_co, gamma) / gamma), dtype=np.float32)

    def block(start: int, stop: int) -> sp.csr_matrix | NDArray[np.float32]:
        # the co-rated count fixes the structure (pairs sharing an item); read the sums there
        both = sp.csr_matrix(sq_and_one[start:stop] @ b_t)
        if both.nnz > DENSE_PAIR_FRACTION * (stop - start) * n_users:  # dense arithmetic is faster
            both_d = both.toarray()
            num = (centred[start:stop] @ c_t).toarray()
            right = (pattern[start:stop] @ sq_t).toarray()
            return weighted(num, both_d.real, right, both_d.imag)
        both.sort_indices()
        cols = both.indices
        keys = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(both.indptr)) * n_users + cols

        def at(m: sp.spmatrix) -> NDArray[np.float32]:
            """m's values on the co-rated structure (m's structure is a subset of it), float32[nnz]."""
            m = sp.csr_matrix(m)
            m_keys = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(m.indptr)) * n_users + m.indices
            out = np.zeros(len(keys), dtype=np.float32)
            out[np.searchsorted(keys, m_keys)] = m.data
            return out

        corr = weighted(at(centred[start:stop] @ c_t), both.data.real, at(pattern[start:stop] @ sq_t), both.data.imag)
        return sp.csr_matrix((corr, cols, both.indptr), shape=both.shape)

    return blockwise_topk(n_users, n_users, k, block, block_bytes=block_bytes)
