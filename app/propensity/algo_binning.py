"""Unweighted quantile binning in front of the booster, and user-grouped stratified folds.

Why bin before ``HistGradientBoostingClassifier``: with class weights (sample weights) and at most
200k rows, scikit-learn finds each feature's bin edges with a weighted percentile, one Python call
per edge: 255 calls x ~70 features per booster, which cost more than growing the trees. Handing it
columns that already have at most 255 distinct values makes it take the midpoints of those values
as edges, which is exact and instant, while the class weights still weight the loss. The edges
themselves are plain (unweighted) quantiles, as scikit-learn uses above 200k rows anyway.

Why not ``StratifiedGroupKFold``: its fold search is a Python loop over groups (tens of seconds for
200k users). Assigning whole users to folds at random within "has a positive row" / "has none"
strata gives the same guarantees here (a user's stacked rows share one fold, both classes in
every fold), vectorised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin

MAX_BINS = 255


def bin_edges(column: NDArray[np.floating[Any]], max_bins: int = MAX_BINS) -> NDArray[np.float64]:
    """Upper edges of all bins but the last, float64[<= max_bins - 1]; NaN is ignored.

    Every distinct value gets its own bin when there are at most ``max_bins`` of them, otherwise the
    edges are the unweighted quantiles at 1/max_bins, 2/max_bins, ... (duplicates merged).
    """
    values = np.unique(column[~np.isnan(column)]).astype(np.float64)
    if len(values) <= max_bins:
        return values[:-1]
    finite = np.sort(column[~np.isnan(column)].astype(np.float64))
    q = np.linspace(0, 100, max_bins + 1)[1:-1]
    return np.unique(np.percentile(finite, q, method="averaged_inverted_cdf"))


class QuantileBinner(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """X float[n, d] -> bin codes float32[n, d] (NaN stays NaN), code i meaning edges[i-1] < x <= edges[i].

    The codes are what the booster sees: at most ``max_bins`` distinct values per column.
    """

    def __init__(self, max_bins: int = MAX_BINS) -> None:
        self.max_bins = max_bins

    def fit(self, X: NDArray[np.floating[Any]], y: Any = None) -> QuantileBinner:
        X = np.asarray(X)
        self.edges_ = [bin_edges(X[:, j], self.max_bins) for j in range(X.shape[1])]
        return self

    def transform(self, X: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        X = np.asarray(X)
        out = np.empty(X.shape, dtype=np.float32)
        for j, edges in enumerate(self.edges_):
            col = X[:, j]
            out[:, j] = np.searchsorted(edges, col, side="left")
            out[np.isnan(col), j] = np.nan
        return out


def group_folds(
    y: NDArray[np.bool_], groups: NDArray[np.integer[Any]], n_splits: int, seed: int = 0
) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """(train rows, test rows) per fold; every row of a group lands in the same test fold, and groups
    with a positive row are spread evenly over the folds (as are the others).

    y: bool[n] labels; groups: int[n] group (user) per row.
    """
    uniq, inverse = np.unique(groups, return_inverse=True)
    positive = np.bincount(inverse, weights=y.astype(np.float64), minlength=len(uniq)) > 0
    rng = np.random.default_rng(seed)
    fold = np.empty(len(uniq), dtype=np.int64)
    for stratum in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        shuffled = rng.permutation(stratum)
        fold[shuffled] = np.arange(len(shuffled)) % n_splits
    row_fold = fold[inverse]
    return [(np.flatnonzero(row_fold != k), np.flatnonzero(row_fold == k)) for k in range(n_splits)]
