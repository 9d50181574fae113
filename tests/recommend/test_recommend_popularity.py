"""Decayed popularity, per-category top lists and the trend score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from app.eventlog import EventLog
from app.recommend.algo_popularity import category_top_items, item_evidence, popularity, trend

DAY = 86_400.0
NOW = 100 * DAY


def _log(rows: list[tuple[str, str, str, float]]) -> EventLog:
    users, items, types, ts = zip(*rows, strict=True)
    return EventLog.from_records(list(users), list(items), list(types), list(ts))


def test_popularity_is_decayed_and_damped_column_sum() -> None:
    log = _log([("u", "a", "view", NOW), ("v", "a", "view", NOW - 10 * DAY), ("u", "b", "purchase", NOW)])
    pop = popularity(log, half_life_days=10, now=NOW)
    np.testing.assert_allclose(pop, [math.log1p(1) + math.log1p(0.5), math.log1p(5)], rtol=1e-6)


def test_item_evidence_counts_users() -> None:
    x = sp.csr_matrix(np.array([[1, 0, 2], [3, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(item_evidence(x), [2, 0, 1])


def test_category_top_items() -> None:
    scores = np.array([5.0, 1.0, 3.0, 4.0, 2.0])
    # categories: 0 = {0, 1, 2}, 1 = {2, 3, 4}, 2 = {} ; item 3 ineligible
    rows, cols = [0, 1, 2, 2, 3, 4], [0, 0, 0, 1, 1, 1]
    ic = sp.csr_matrix((np.ones(6), (rows, cols)), shape=(5, 3))
    tops = category_top_items(scores, ic, n=2)
    assert [t.tolist() for t in tops] == [[0, 2], [3, 2], []]
    tops = category_top_items(scores, ic, n=5, eligible=np.array([1, 1, 1, 0, 1], dtype=bool))
    assert [t.tolist() for t in tops] == [[0, 2, 1], [2, 4], []]


def test_trend_z_score() -> None:
    rows = [(f"u{k}", "hot", "view", NOW - DAY) for k in range(8)]       # 8 recent, 0 previous
    rows += [(f"u{k}", "flat", "view", NOW - DAY) for k in range(3)]     # 3 recent, 3 previous
    rows += [(f"w{k}", "flat", "view", NOW - 10 * DAY) for k in range(3)]
    rows += [(f"u{k}", "cold", "view", NOW - 10 * DAY) for k in range(4)]  # 0 recent, 4 previous
    rows += [("u0", "cold", "dislike", NOW - DAY)]                        # negative: not counted
    log = _log(rows)
    t = dict(zip(log.item_ids.tolist(), trend(log, NOW, window_days=7).tolist(), strict=True))
    assert t["hot"] == pytest.approx(8 / 3)
    assert t["flat"] == pytest.approx(0.0)
    assert t["cold"] == pytest.approx(-4 / math.sqrt(5))
