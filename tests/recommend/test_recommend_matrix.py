"""Interaction matrix, history weights and ratings matrix on logs small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.eventlog import TYPE_CODE, EventLog
from app.recommend.algo_matrix import (
    InteractionConfig,
    build_interactions,
    history_weights,
    interactions,
    ratings_matrix,
    recency_rank,
)

DAY = 86_400.0
NOW = 1_000 * DAY


Row = tuple[str, str, str, float, float | None]  # user, item, type, ts, value


def _log(rows: list[Row], universe: list[str] | None = None) -> EventLog:
    users, items, types, ts, values = zip(*rows, strict=True)
    return EventLog.from_records(list(users), list(items), list(types), list(ts), list(values),
                                 item_universe=universe)


def test_type_weights_sum_then_log_damp() -> None:
    log = _log([
        ("u", "a", "view", NOW, None),
        ("u", "a", "view", NOW, None),          # repeats add: 1 + 1
        ("u", "b", "purchase", NOW, None),      # 5
        ("u", "c", "add_to_cart", NOW, None),   # 3 - 1
        ("u", "c", "remove_from_cart", NOW, None),
        ("u", "d", "dislike", NOW, None),       # -3 -> clipped, no entry
    ])
    x = build_interactions(log, half_life_days=30, now=NOW).toarray()
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0], [math.log1p(2), math.log1p(5), math.log1p(2), 0.0], rtol=1e-6)
    assert build_interactions(log, half_life_days=30, now=NOW).nnz == 3


def test_time_decay_halves_per_half_life() -> None:
    log = _log([("u", "a", "purchase", NOW - 10 * DAY, None), ("u", "b", "purchase", NOW, None)])
    x = build_interactions(log, half_life_days=10, now=NOW).toarray()
    np.testing.assert_allclose(x[0], [math.log1p(2.5), math.log1p(5.0)], rtol=1e-6)
    flat = build_interactions(log, half_life_days=float("inf"), now=NOW).toarray()
    np.testing.assert_allclose(flat[0], [math.log1p(5.0)] * 2, rtol=1e-6)


def test_negative_event_cancels_positive_evidence() -> None:
    log = _log([("u", "a", "view", NOW, None), ("u", "a", "dislike", NOW, None)])
    assert build_interactions(log, half_life_days=30, now=NOW).nnz == 0


def test_rating_centred_on_user_mean() -> None:
    # user mean 4: a 5 is +1 above it, a 3 is 1 below; weight = 3 + 0.5 * (r - 4)
    log = _log([("u", "a", "rating", NOW, 5.0), ("u", "b", "rating", NOW, 3.0),
                ("v", "a", "rating", NOW, 1.0)])
    x = build_interactions(log, half_life_days=30, now=NOW, rating_scale=0.5).toarray()
    np.testing.assert_allclose(x[0], [math.log1p(3.5), math.log1p(2.5)], rtol=1e-6)
    np.testing.assert_allclose(x[1], [math.log1p(3.0), 0.0], rtol=1e-6)  # alone at its own mean
    raw = build_interactions(log, half_life_days=30, now=NOW, rating_centering=False).toarray()
    np.testing.assert_allclose(raw[0], [math.log1p(4.0), math.log1p(3.0)], rtol=1e-6)  # midpoint 3
    np.testing.assert_allclose(raw[1], [math.log1p(2.0), 0.0], rtol=1e-6)


def test_rating_far_below_mean_is_negative_evidence() -> None:
    log = _log([("u", "a", "rating", NOW, 5.0)] * 9 + [("u", "b", "rating", NOW, 1.0)])
    cfg = InteractionConfig(rating_scale=1.0, half_life_days=30)
    x = interactions(log, cfg, NOW).toarray()
    assert x[0, 1] == 0.0  # 3 + (1 - 4.6) < 0: clipped
    assert x[0, 0] > 0


def test_recency_rank_and_event_half_life() -> None:
    user = np.array([0, 1, 0, 0], dtype=np.int32)
    ts = np.array([5.0, 1.0, 5.0, 1.0])
    np.testing.assert_array_equal(recency_rank(user, ts, 2), [1, 0, 0, 2])  # ties: later position newer
    log = _log([("u", "a", "view", NOW - 2, None), ("u", "b", "view", NOW - 1, None),
                ("u", "c", "view", NOW, None)])
    cfg = InteractionConfig(half_life_days=float("inf"), half_life_events=1.0)
    x = interactions(log, cfg, NOW).toarray()
    np.testing.assert_allclose(x[0], np.log1p([0.25, 0.5, 1.0]), rtol=1e-6)


def test_per_user_now() -> None:
    log = _log([("u", "a", "view", 10 * DAY, None), ("v", "a", "view", 20 * DAY, None)])
    cfg = InteractionConfig(half_life_days=10)
    x = interactions(log, cfg, np.array([10 * DAY, 30 * DAY])).toarray()
    np.testing.assert_allclose(x[:, 0], np.log1p([1.0, 0.5]), rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("half_life_days", "half_life_events", "centering", "threshold", "valued"), [
    (20.0, 5.0, True, -math.inf, False), (20.0, 5.0, False, -math.inf, False), (math.inf, 3.0, True, 3.5, False),
    (7.0, math.inf, True, -math.inf, True), (math.inf, 8.0, False, 3.5, True),
])
def test_history_weights_equal_the_matrix_row(
    seed: int, half_life_days: float, half_life_events: float, centering: bool, threshold: float, valued: bool
) -> None:
    """Serving's per-request weighting (plain Python) gives the validation matrix's row, to the bit:
    repeats, negative events, fractional ratings, equal timestamps (a recency tie), thresholded
    ratings and quantities counted as weights included."""
    rng = np.random.default_rng(seed)
    n = 40
    types = rng.choice(["view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "dislike"], n)

    def value(t: str) -> float | None:
        if t == "rating":
            return float(rng.integers(1, 6) + rng.choice([0.0, 0.3]))
        return float(rng.choice([1.0, 2.0, 7.5])) if t == "purchase" and rng.random() < 0.7 else None

    log = _log([("u", f"i{rng.integers(6)}", str(t), float(NOW - rng.integers(0, 8) * DAY), value(str(t)))
                for t in types], universe=[f"i{k}" for k in range(6)])
    cfg = InteractionConfig(half_life_days=half_life_days, half_life_events=half_life_events,
                            rating_centering=centering, rating_threshold=threshold, value_weighted=valued)
    row = interactions(log, cfg, NOW).toarray()[0]
    idx, w = history_weights(log.item.tolist(), log.type.tolist(), log.value.tolist(), log.ts.tolist(), NOW, cfg)
    assert idx.dtype == np.int32 and w.dtype == np.float32
    assert np.all(np.diff(w) <= 0)
    assert np.array_equal(np.sort(idx), np.flatnonzero(row))
    np.testing.assert_array_equal(w, row[idx])


def test_history_weights_drop_unknown_items_and_break_ties_by_item() -> None:
    cfg = InteractionConfig(half_life_days=math.inf)
    idx, w = history_weights([3, -1, 1, 2], [TYPE_CODE["view"]] * 4, [math.nan] * 4, [NOW] * 4, NOW, cfg)
    assert idx.tolist() == [1, 2, 3]  # equal strengths: lower item first; item -1 dropped
    np.testing.assert_allclose(w, np.log1p([1.0, 1.0, 1.0]), rtol=1e-6)


def test_history_weights_empty() -> None:
    empty_i = np.zeros(0, dtype=np.int32)
    idx, w = history_weights(empty_i, empty_i.astype(np.int8), np.zeros(0, np.float32), np.zeros(0),
                             NOW, InteractionConfig())
    assert idx.size == 0 and w.size == 0


def test_unknown_event_type_in_weights_is_rejected() -> None:
    log = _log([("u", "a", "view", NOW, None)])
    with pytest.raises(ValueError, match="unknown event types"):
        build_interactions(log, weights={"teleport": 1.0}, now=NOW)


def test_ratings_matrix_is_mean_rating() -> None:
    log = _log([("u", "a", "rating", NOW, 4.0), ("u", "a", "rating", NOW, 2.0), ("u", "b", "view", NOW, None),
                ("v", "b", "rating", NOW, 5.0)])
    r = ratings_matrix(log).toarray()
    np.testing.assert_allclose(r, [[3.0, 0.0], [0.0, 5.0]])
    assert log.type[2] == TYPE_CODE["view"]


def test_value_weighting_counts_quantities_but_not_ratings() -> None:
    log = _log([("u", "a", "purchase", NOW, 3.0), ("u", "b", "purchase", NOW, None), ("u", "c", "rating", NOW, 5.0)])
    plain = InteractionConfig(rating_scale=0.0)
    counted = InteractionConfig(rating_scale=0.0, value_weighted=True)
    np.testing.assert_allclose(interactions(log, plain, NOW).toarray()[0], np.log1p([5.0, 5.0, 3.0]), rtol=1e-6)
    np.testing.assert_allclose(interactions(log, counted, NOW).toarray()[0], np.log1p([15.0, 5.0, 3.0]), rtol=1e-6)


def test_binary_strengths_flatten_the_matrix_only() -> None:
    log = _log([("u", "a", "purchase", NOW, None), ("u", "a", "purchase", NOW, None), ("u", "b", "view", NOW, None),
                ("u", "c", "remove_from_cart", NOW, None)])
    x = interactions(log, InteractionConfig(binary=True), NOW).toarray()[0]
    np.testing.assert_array_equal(x, [1.0, 1.0, 0.0])  # net negative evidence stays out
