"""Features as of a cut-off, checked by hand on tiny logs, plus the no-peeking property."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.eventlog import EVENT_TYPES, EventLog, unique_sorted
from app.propensity import DAY, FeatureSpec, build_features

T = 1_700_000_000.0
HOUR = 3600.0


def feature(log: EventLog, user: str, name: str, **kwargs: object) -> float:
    fm = build_features(log, T, **kwargs)  # type: ignore[arg-type]
    row = list(log.user_ids).index(user)
    return float(fm.column(name)[row])


@pytest.fixture
def shop_log() -> EventLog:
    # user a: a view 45 d ago, then carts, one of which was bought (qty 2 at 10.0), and events at/after T.
    return EventLog.from_records(
        users=["a", "a", "a", "a", "a", "a", "a", "b"],
        items=["x", "x", "x", "y", "x", "y", "y", "x"],
        types=["view", "view", "add_to_cart", "add_to_cart", "purchase", "purchase", "view", "view"],
        ts=[T - 45 * DAY, T - 10 * DAY, T - 5 * DAY, T - 3 * DAY, T - 2 * DAY, T, T + DAY, T - 100 * DAY],
        values=[None, None, None, None, 2, 1, None, None],
        prices=[None, None, 10, 20, 10, 20, None, None],
        item_universe=["x", "y"],
    )


def test_recency_frequency_monetary_by_hand(shop_log: EventLog) -> None:
    fm = build_features(shop_log, T)
    a = dict(zip(fm.names, fm.X[0].tolist(), strict=True))
    assert a["days_since_last_event"] == 2
    assert a["days_since_last_purchase"] == 2
    assert a["days_since_last_cart"] == 3
    assert a["tenure_days"] == 45
    assert (a["events_7d"], a["events_30d"], a["events_90d"], a["events_total"]) == (3, 4, 5, 5)
    assert (a["view_7d"], a["view_30d"], a["view_90d"]) == (0, 1, 2)
    assert a["add_to_cart_7d"] == 2 and a["purchase_7d"] == 1
    assert a["revenue_7d"] == 20.0 and a["revenue_total"] == 20.0  # price x quantity
    assert a["purchases_total"] == 1 and a["avg_purchase_value"] == 20.0
    assert a["abandoned_carts_7d"] == 1  # cart y never bought before T (its purchase at T is invisible)
    assert a["active_days_7d"] == 3 and a["active_days_90d"] == 5
    assert a["distinct_items"] == 2 and a["distinct_items_30d"] == 2
    assert a["days_between_purchases"] == 365  # fewer than two purchase days: the cap
    assert a["activity_trend"] == pytest.approx(np.log1p(4) - np.log1p(1), abs=1e-6)
    b = dict(zip(fm.names, fm.X[1].tolist(), strict=True))
    assert b["days_since_last_event"] == 100 and b["days_since_last_purchase"] == 365
    assert b["events_90d"] == 0 and b["events_total"] == 1


def test_event_exactly_at_cutoff_is_not_a_feature(shop_log: EventLog) -> None:
    assert feature(shop_log, "a", "purchases_total") == 1  # the purchase at T is the label's, not history
    later = build_features(shop_log, T + 1.0)
    assert later.column("purchases_total")[0] == 2


def test_window_edges_are_inclusive_of_exactly_w_days() -> None:
    log = EventLog.from_records(
        users=["a", "a"], items=["x", "x"], types=["view", "view"], ts=[T - 7 * DAY, T - 7 * DAY - 1.0]
    )
    assert feature(log, "a", "events_7d") == 1
    assert feature(log, "a", "events_30d") == 2


def test_sessions_from_ids_and_from_30_minute_gaps() -> None:
    log = EventLog.from_records(
        users=["b", "b", "b", "b", "c", "c", "c"],
        items=["x"] * 7,
        types=["view"] * 7,
        ts=[
            T - 3 * HOUR,
            T - 3 * HOUR + 600,
            T - 3 * HOUR + 1200,
            T - HOUR,
            T - 6 * HOUR,
            T - HOUR,
            T - 0.5 * HOUR,
        ],
        sessions=[None, None, None, None, "s1", "s1", None],
    )
    assert feature(log, "b", "sessions_total") == 2  # three events 10 min apart, then one 1h40 later
    assert feature(log, "b", "events_per_session") == 2
    assert feature(log, "c", "sessions_7d") == 2  # s1 spans 5 hours but is one session, plus one anonymous


def test_abandonment_counts_carts_without_a_later_purchase_of_the_item() -> None:
    log = EventLog.from_records(
        users=["a"] * 5,
        items=["x", "y", "x", "z", "z"],
        types=["add_to_cart", "add_to_cart", "purchase", "purchase", "add_to_cart"],
        ts=[T - 6 * DAY, T - 5 * DAY, T - 4 * DAY, T - 3 * DAY, T - 2 * DAY],
    )
    # x bought after its cart; y never bought; z bought only *before* its cart addition.
    assert feature(log, "a", "abandoned_carts_7d") == 2


def test_distinct_categories_and_category_columns() -> None:
    log = EventLog.from_records(
        users=["a", "a", "a"],
        items=["x", "y", "z"],
        types=["view", "purchase", "view"],
        ts=[T - 40 * DAY, T - 20 * DAY, T - 2 * DAY],
        item_universe=["x", "y", "z"],
    )
    cats = [["shoes"], ["shoes", "sport"], ["books"]]
    fm = build_features(log, T, FeatureSpec(category="shoes"), item_categories=cats)
    row = dict(zip(fm.names, fm.X[0].tolist(), strict=True))
    assert row["distinct_categories"] == 3
    assert (row["cat_events_30d"], row["cat_events_90d"], row["cat_purchases_total"]) == (1, 2, 1)
    assert row["days_since_last_cat_purchase"] == 20
    with pytest.raises(ValueError, match="unknown category 'hats'"):
        build_features(log, T, FeatureSpec(category="hats"), item_categories=cats)


def test_days_between_purchases() -> None:
    log = EventLog.from_records(
        users=["a"] * 3,
        items=["x"] * 3,
        types=["purchase"] * 3,
        ts=[T - 20 * DAY, T - 10 * DAY, T - 10 * DAY + 60],
    )
    assert feature(log, "a", "days_between_purchases") == pytest.approx(10.0, abs=1e-3)


def test_user_attributes_numeric_kept_categorical_capped() -> None:
    users = [f"u{k:02d}" for k in range(12)]
    log = EventLog.from_records(users=users, items=["x"] * 12, types=["view"] * 12, ts=[T - DAY] * 12)
    attrs = [{"age": 20 + k, "city": f"c{k % 4}" if k < 11 else "rare", "email": f"{k}@x.org"} for k in range(12)]
    attrs[3] = {"city": "c3"}  # missing age
    spec = FeatureSpec.fit(attrs, max_levels=3)
    fm = build_features(log, T, spec, user_attributes=attrs)
    assert "attr:age" in fm.names and not any(n.startswith("attr:email") for n in fm.names)
    city = [n for n in fm.names if n.startswith("attr:city=")]
    assert city == ["attr:city=c0", "attr:city=c1", "attr:city=c2"]  # the 3 most frequent levels
    assert np.isnan(fm.column("attr:age")[3]) and fm.column("attr:age")[0] == 20
    assert fm.X[users.index("u05"), fm.index("attr:city=c1")] == 1
    assert fm.X[users.index("u11"), [fm.index(n) for n in city]].sum() == 0  # unkept level: all zeros


def test_users_without_events_get_cap_recency_and_zero_counts() -> None:
    log = EventLog.from_records(users=["a"], items=["x"], types=["view"], ts=[T + DAY])
    fm = build_features(log, T)
    assert fm.column("days_since_last_event")[0] == 365 and fm.column("events_total")[0] == 0
    assert np.isfinite(fm.X).all()


event = st.tuples(
    st.integers(0, 3),  # user
    st.integers(-1, 4),  # item (-1 none)
    st.sampled_from(range(len(EVENT_TYPES))),
    st.floats(0.001, 120.0),  # days before / after the cut-off
    st.integers(-1, 3),  # session (-1 none)
    st.one_of(st.none(), st.floats(0.5, 500.0)),  # price
)


Event = tuple[int, int, int, float, int, float | None]


def _log(past: list[Event], future: list[Event], rnd: random.Random | None = None) -> EventLog:
    """Events `d` days before T (past) or at T + d days - 1 ms (future, so >= T), optionally shuffled."""
    rows = [(u, i, t, T - d * DAY, s, p) for u, i, t, d, s, p in past]
    rows += [(u, i, t, T + d * DAY - 0.001, s, p) for u, i, t, d, s, p in future]
    if rnd is not None:
        rnd.shuffle(rows)
    n = len(rows)

    def col(k: int, dtype: type) -> np.ndarray:  # type: ignore[type-arg]
        return np.array([np.nan if r[k] is None else r[k] for r in rows], dtype=dtype).reshape(n)

    return EventLog(
        user=col(0, np.int32), item=col(1, np.int32), type=col(2, np.int8),
        value=np.full(n, np.nan, dtype=np.float32), price=col(5, np.float32), ts=col(3, np.float64),
        session=col(4, np.int32), user_ids=np.array(["u0", "u1", "u2", "u3"], dtype=object),
        item_ids=np.array(["i0", "i1", "i2", "i3", "i4"], dtype=object),
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(event, max_size=25), st.lists(event, min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_no_peeking_events_at_or_after_the_cutoff_never_change_features(
    past: list[Event], future: list[Event], rnd: random.Random
) -> None:
    cats = [["a"], ["a", "b"], ["b"], [], ["c"]]
    spec = FeatureSpec(category="a")
    before = build_features(_log(past, []), T, spec, item_categories=cats)
    after = build_features(_log(past, future, rnd), T, spec, item_categories=cats)
    assert before.names == after.names
    np.testing.assert_array_equal(before.X, after.X)
    assert np.isfinite(after.X).all()


def test_unique_sorted_equals_numpys_unique() -> None:
    rng = np.random.default_rng(3)
    for keys in (rng.integers(-5, 10**12, 50_000), rng.integers(0, 7, 1_000), np.array([4, 4, 4]),
                 np.zeros(0, dtype=np.int64)):
        got = unique_sorted(keys)
        assert np.array_equal(got, np.unique(keys)) and got.dtype == keys.dtype
