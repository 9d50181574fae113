"""Ranking metrics on known rankings and the per-user time holdout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from app.eventlog import EventLog
from app.recommend.algo_metrics import (
    f1_at_k,
    hits_matrix,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    time_holdout,
)

# user 0: relevant {0, 2}, ranked [0, 1, 2]; user 1: relevant {3}, ranked [1, 2, -1]; user 2: nothing
TOP = np.array([[0, 1, 2], [1, 2, -1], [0, 1, 2]], dtype=np.int32)
REL = sp.csr_matrix((np.ones(3), ([0, 0, 1], [0, 2, 3])), shape=(3, 4))


def test_ndcg_of_a_known_ranking() -> None:
    hits = hits_matrix(TOP, REL)
    np.testing.assert_array_equal(hits, [[1, 0, 1], [0, 0, 0], [0, 0, 0]])
    n_rel = np.array([2, 1, 0])
    ndcg = ndcg_at_k(hits, n_rel, 3)
    assert ndcg[0] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert ndcg[1] == 0.0 and ndcg[2] == 0.0
    # ideal DCG uses min(k, |relevant|): one relevant item at rank 1 is perfect at any k
    assert ndcg_at_k(np.array([[1, 0, 0]], dtype=bool), np.array([1]), 3)[0] == pytest.approx(1.0)
    assert ndcg_at_k(np.array([[0, 1]], dtype=bool), np.array([5]), 2)[0] == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_precision_recall_f1() -> None:
    hits = hits_matrix(TOP, REL)
    n_rel = np.array([2, 1, 0])
    np.testing.assert_allclose(precision_at_k(hits, 2), [0.5, 0, 0])
    np.testing.assert_allclose(recall_at_k(hits, n_rel, 3), [1.0, 0, 0])
    np.testing.assert_allclose(f1_at_k(hits, n_rel, 2), [2 * 0.5 * 0.5 / 1.0, 0, 0])


def test_ranking_metrics_averages_users_with_relevant_items() -> None:
    m = ranking_metrics(TOP, REL, ks=(1, 3))
    assert m["users"] == 2
    assert m["precision@1"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx(0.5 * (1 + 0.5) / (1 + 1 / math.log2(3)))


def test_time_holdout_last_fraction_per_user() -> None:
    users = ["a"] * 10 + ["b"] * 5 + ["c"] + ["d"] * 2
    ts = [float(t) for t in [9, 1, 2, 3, 4, 5, 6, 7, 8, 0]] + [5, 4, 3, 2, 1] + [1] + [1, 1]
    items = [f"i{k}" for k in range(len(users))]
    log = EventLog.from_records(users, items, ["view"] * len(users), ts)
    mask = time_holdout(log, 0.2)
    assert np.flatnonzero(mask).tolist() == [0, 8, 10, 17]  # a: ts 9, 8; b: ts 5; c: none; d: tie -> later
    one_item_less = EventLog.from_records(["a", "a"], ["x", None], ["view", "view"], [1.0, 2.0])
    assert not time_holdout(one_item_less).any()  # events without an item never count
