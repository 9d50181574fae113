"""RowCache on tiny rows whose right answer is plain: gathered rows, padding, widening, LRU eviction."""

from __future__ import annotations

import numpy as np

from app.recommend.row_cache import MIN_CAPACITY, RowCache


def _row(*pairs: tuple[int, float]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([i for i, _ in pairs], dtype=np.int32), np.array([s for _, s in pairs], dtype=np.float32))


def _fill(cache: RowCache, rows: dict[int, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    positions = list(rows)
    out_i, out_s, missing = cache.gather(positions)
    return cache.complete((out_i, out_s), positions, missing, [rows[positions[r]] for r in missing])


def test_missing_rows_are_reported_then_served_from_the_cache() -> None:
    cache = RowCache(n_items=10)
    out_i, out_s, missing = cache.gather([3, 7])
    assert missing == [0, 1] and (out_i == -1).all() and (out_s == 0).all()

    filled_i, filled_s = _fill(cache, {3: _row((1, 0.5), (2, 0.25)), 7: _row((4, 1.0))})
    assert filled_i.tolist() == [[1, 2], [4, -1]]
    assert filled_s.tolist() == [[0.5, 0.25], [1.0, 0.0]]

    again_i, again_s, missing = cache.gather([7, 3])
    assert missing == []
    assert again_i.tolist() == [[4, -1], [1, 2]] and again_s.tolist() == [[1.0, 0.0], [0.5, 0.25]]


def test_an_item_without_neighbours_is_cached_as_an_empty_row() -> None:
    cache = RowCache(n_items=10)
    _fill(cache, {1: _row((2, 0.5)), 5: _row()})
    out_i, _, missing = cache.gather([5])
    assert missing == [] and (out_i == -1).all()


def test_a_longer_row_widens_the_cache_and_keeps_the_rows_it_has() -> None:
    cache = RowCache(n_items=10)
    _fill(cache, {0: _row((1, 0.5))})
    wide_i, _ = _fill(cache, {2: _row((3, 0.9), (4, 0.8), (5, 0.7))})
    assert wide_i.tolist() == [[3, 4, 5]]
    out_i, out_s, missing = cache.gather([0, 2])
    assert missing == []
    assert out_i.tolist() == [[1, -1, -1], [3, 4, 5]]
    assert out_s[0].tolist() == [0.5, 0.0, 0.0]


def test_the_least_recently_used_row_gives_up_its_slot() -> None:
    cache = RowCache(n_items=10_000, budget_bytes=1)  # the smallest capacity
    _fill(cache, {p: _row((p, 1.0)) for p in range(MIN_CAPACITY)})
    cache.gather([0])  # touched: now the most recent
    _fill(cache, {MIN_CAPACITY: _row((1, 1.0))})  # full: evicts position 1, the oldest untouched
    assert len(cache) == MIN_CAPACITY
    assert cache.gather([1])[2] == [0]
    out_i, _, missing = cache.gather([0, MIN_CAPACITY])
    assert missing == [] and out_i[:, 0].tolist() == [0, 1]
