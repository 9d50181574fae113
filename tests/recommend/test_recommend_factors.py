"""ALS served as item-item rows: on a matrix of disjoint taste groups, neighbours stay in the group."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from app.recommend.algo_factors import als_item_factors, als_neighbours
from app.recommend.algo_similarity import CFConfig, cf_neighbours


def _groups(n_users: int = 300, n_groups: int = 3, per_group: int = 10, seed: int = 0) -> sp.csr_matrix:
    """Each user touches 5 random items of one group only: item i belongs to group i // per_group."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        g = u % n_groups
        for i in rng.choice(per_group, 5, replace=False):
            rows.append(u)
            cols.append(g * per_group + int(i))
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_groups * per_group))


def test_als_neighbours_stay_inside_each_taste_group() -> None:
    x = _groups()
    nb = als_neighbours(x, k=5, factors=8, regularization=10.0)
    assert nb.indices.shape == (30, 5)
    assert (nb.indices >= 0).all()
    same = nb.indices // 10 == (np.arange(30) // 10)[:, None]
    assert same.all()  # the item's own group, never another
    assert (nb.indices != np.arange(30)[:, None]).all()  # never itself
    assert (np.diff(nb.scores, axis=1) <= 0).all() and (nb.scores > 0).all()


def test_als_rows_are_the_projection_of_the_factors() -> None:
    """W = Y (Y^T Y + reg I)^-1 Y^T, computed densely here, against the blockwise top-k rows."""
    x = _groups(seed=1)
    reg = 1.0
    y = als_item_factors(x, factors=8, regularization=reg).astype(np.float64)
    w = y @ np.linalg.inv(y.T @ y + reg * np.eye(8)) @ y.T
    np.fill_diagonal(w, -np.inf)
    nb = als_neighbours(x, k=3, factors=8, regularization=reg, block_bytes=8 * 30 * 4)  # several blocks
    expected = np.sort(w, axis=1)[:, ::-1][:, :3]
    np.testing.assert_allclose(nb.scores, expected, rtol=1e-4, atol=1e-6)


def test_als_is_a_cf_variant_with_a_catalog_limit() -> None:
    x = _groups()
    nb = cf_neighbours(x, CFConfig(variant="als", k=4, als_factors=8, als_regularization=1.0))
    assert nb.indices.shape == (30, 4)
    with pytest.raises(ValueError, match="limit is 20 items"):
        cf_neighbours(x, CFConfig(variant="als", k=4, als_max_items=20))
