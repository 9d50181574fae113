"""Quantile bin codes in front of the booster, and user-grouped stratified calibration folds."""

from __future__ import annotations

import numpy as np

from app.propensity.algo_binning import QuantileBinner, bin_edges, group_folds


def test_few_distinct_values_each_get_their_own_bin() -> None:
    col = np.array([3.0, 1.0, 1.0, np.nan, 7.0, 3.0])
    np.testing.assert_array_equal(bin_edges(col), [1.0, 3.0])
    codes = QuantileBinner().fit(col[:, None]).transform(col[:, None])[:, 0]
    np.testing.assert_array_equal(codes, [1, 0, 0, np.nan, 2, 1])
    # unseen values land in the bin whose edges enclose them: (1, 3] -> 1, above 3 -> 2
    np.testing.assert_array_equal(QuantileBinner().fit(col[:, None]).transform(np.array([[2.0], [9.0]]))[:, 0], [1, 2])


def test_many_values_get_at_most_max_bins_codes_of_equal_counts() -> None:
    col = np.arange(1000, dtype=np.float64)
    codes = QuantileBinner(max_bins=4).fit(col[:, None]).transform(col[:, None])[:, 0]
    assert np.unique(codes).tolist() == [0, 1, 2, 3]
    assert np.bincount(codes.astype(int)).tolist() == [250, 250, 250, 250]
    assert np.all(np.diff(codes) >= 0)  # monotone: the booster's splits keep their meaning


def test_group_folds_keep_users_together_and_spread_positives() -> None:
    groups = np.repeat(np.arange(30), 2)  # every user has two stacked rows
    y = np.zeros(60, dtype=bool)
    y[:12:2] = True  # six users with a positive row
    folds = group_folds(y, groups, 3, seed=1)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(60))  # a partition of the rows
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert y[test].sum() == 2  # 6 positive users over 3 folds
