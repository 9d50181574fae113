"""A matrix-factorisation candidate: implicit's ALS, served through the same item-item lists as the rest.

ALS (Hu, Koren & Volinsky 2008, as maintained in `implicit`) fits item factors Y [n_items, f]. A
shopper's factors given their history p (confidence-weighted strengths c) are, with the per-user
confidence term of the Gram matrix left out, x = (Y^T Y + reg I)^-1 Y^T c, so their score for item j
is sum over history items h of c_h * W[h, j] with

    W = Y (Y^T Y + reg I)^-1 Y^T        float[n_items, n_items]

an item-item matrix like EASE's. Its top-k rows are what serving reads, so the model is served by
the unchanged scorer, and validation measures exactly that served approximation. Unlike EASE it
never inverts an item x item matrix: the rows are computed in blocks from the factors, so memory
stays O(n_items * (f + k)); the time is O(n_items^2 * f), which caps the catalog it is tried on.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.common.threads import one_blas_thread
from app.recommend.algo_neighbours import DEFAULT_BLOCK_BYTES, Neighbours, blockwise_topk


def als_item_factors(
    x: sp.csr_matrix, factors: int = 64, regularization: float = 10.0, confidence: float = 5.0,
    iterations: int = 15, seed: int = 0,
) -> NDArray[np.float32]:
    """Item factors float32[n_items, factors] of implicit's ALS on the strengths x [n_users, n_items]
    (confidence = 1 + `confidence` * strength), single-threaded and seeded: a rebuild is repeatable."""
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit's solver calls BLAS on tiny f x f systems per user: a BLAS thread pool only adds
    # contention there (implicit itself checks for it and warns). One such section at a time: the pool is
    # process-wide, and both validation folds may fit at once (`app.common.threads`).
    with one_blas_thread():
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=confidence,
                                        iterations=iterations, num_threads=1, random_state=seed)
        model.fit(sp.csr_matrix(x, dtype=np.float32), show_progress=False)
    return np.asarray(model.item_factors, dtype=np.float32)


def als_neighbours(
    x: sp.csr_matrix, k: int = 100, factors: int = 64, regularization: float = 10.0, max_items: int = 30_000,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Neighbours:
    """Top-k positive entries of each row of W (module docstring), as `Neighbours`.

    Raises ValueError above `max_items` (the n_items^2 products would dominate the rebuild);
    validation then leaves ALS out, as it does EASE above its own limit.
    """
    n = x.shape[1]
    if n > max_items:
        raise ValueError(f"ALS item-item rows cost n_items^2 x factors; limit is {max_items} items")
    y = als_item_factors(x, factors, regularization)
    gram = (y.T @ y).astype(np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    projected = np.asarray(y @ np.linalg.inv(gram), dtype=np.float32)  # Y A^-1, [n_items, f]
    yt = np.ascontiguousarray(y.T)

    def block(start: int, stop: int) -> NDArray[np.float32]:
        return projected[start:stop] @ yt

    return blockwise_topk(n, n, k, block, block_bytes=block_bytes)
