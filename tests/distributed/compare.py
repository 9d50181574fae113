"""Comparisons of what the distributed and the in-process rebuild compute."""

from __future__ import annotations

import numpy as np

from app.recommend.algo_neighbours import Neighbours


def assert_same_neighbours(a: Neighbours, b: Neighbours, atol: float = 1e-5) -> None:
    """Row by row: the same scores (to float tolerance), and the same neighbours wherever a score is
    not tied, within tolerance, with the row's last kept one (sums in another order may break a tie
    at the k-th place the other way; either neighbour is as good)."""
    assert a.indices.shape == b.indices.shape
    np.testing.assert_allclose(a.scores, b.scores, atol=atol, rtol=1e-5)
    for row in range(a.n):
        kept = a.indices[row] >= 0
        assert np.array_equal(kept, b.indices[row] >= 0)
        if not kept.any():
            continue
        scores = a.scores[row][kept]
        boundary = np.abs(scores).min() if kept.all() else -np.inf  # a full row may have cut a tie
        sure = np.abs(scores) > boundary + atol
        assert set(a.indices[row][kept][sure].tolist()) == set(b.indices[row][kept][sure].tolist()), row
