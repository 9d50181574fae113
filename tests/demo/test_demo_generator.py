"""The synthetic shop: well-formed, deterministic, and carrying the signal the models are meant to find."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from itertools import combinations
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from app.demo import Shop, generate_shop, iter_event_batches, to_event_log
from app.eventlog import EVENT_TYPES, TYPE_CODE

NOW = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(seed=0, now=NOW)


def _words(item: dict[str, Any]) -> set[str]:
    return set(re.findall(r"[a-z]+", f"{item['title']} {item['description']}".lower()))


def _jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _check_well_formed(shop: Shop, days: int) -> None:
    item_ids = [it["item_id"] for it in shop.items]
    user_ids = [u["user_id"] for u in shop.users]
    event_ids = [e["event_id"] for e in shop.events]
    assert len(set(item_ids)) == len(item_ids)
    assert len(set(user_ids)) == len(user_ids)
    assert len(set(event_ids)) == len(event_ids)
    items, users = set(item_ids), set(user_ids)
    now = shop.truth.now
    ts = [e["timestamp"] for e in shop.events]
    assert ts == sorted(ts)
    for e in shop.events:
        assert e["item_id"] in items
        assert e["user_id"] in users
        assert e["type"] in EVENT_TYPES
        assert now - days * DAY <= e["timestamp"] <= now
        if e["type"] in ("add_to_cart", "remove_from_cart", "purchase"):
            assert e["price"] is not None and e["price"] > 0
        if e["type"] == "purchase":
            assert e["value"] >= 1 and e["value"] == int(e["value"])
        elif e["type"] == "rating":
            assert e["value"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        else:
            assert e["value"] is None


def test_same_seed_same_shop_and_other_seed_differs() -> None:
    a = generate_shop(n_users=80, n_items=50, seed=7, now=NOW)
    b = generate_shop(n_users=80, n_items=50, seed=7, now=NOW)
    c = generate_shop(n_users=80, n_items=50, seed=8, now=NOW)
    assert (a.items, a.users, a.events) == (b.items, b.users, b.events)
    np.testing.assert_array_equal(a.truth.user_intent, b.truth.user_intent)
    np.testing.assert_array_equal(a.truth.purchased_in_horizon, b.truth.purchased_in_horizon)
    assert a.events != c.events
    assert a.items != c.items


def test_now_defaults_to_the_wall_clock() -> None:
    before = time.time()
    shop = generate_shop(n_users=20, n_items=20)
    assert before <= shop.truth.now <= time.time()
    assert all(e["timestamp"] <= shop.truth.now for e in shop.events)


def test_default_shop_is_well_formed(shop: Shop) -> None:
    _check_well_formed(shop, days=120)
    assert len(shop.items) == 200 and len(shop.users) == 500
    assert shop.items[0]["item_id"] == "item-0001" and shop.users[0]["user_id"] == "user-00001"


@settings(max_examples=15, deadline=None)
@given(
    n_users=st.integers(1, 40),
    n_items=st.integers(1, 30),
    n_topics=st.integers(2, 12),
    days=st.integers(31, 90),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_small_shop_is_well_formed(
    n_users: int, n_items: int, n_topics: int, days: int, seed: int
) -> None:
    shop = generate_shop(n_users=n_users, n_items=n_items, n_topics=n_topics, days=days, seed=seed, now=NOW)
    _check_well_formed(shop, days)
    assert shop.truth.item_topics.shape == (n_items, n_topics)
    np.testing.assert_allclose(shop.truth.user_taste.sum(axis=1), 1.0)


def test_items_have_the_api_shape(shop: Shop) -> None:
    keys = {"item_id", "title", "description", "categories", "tags", "brand", "price", "available"}
    for it in shop.items:
        assert set(it) == keys | {"attributes"}
        assert it["categories"] and it["tags"] and it["brand"] and it["title"]
        assert isinstance(it["price"], float) and it["price"] > 0
        assert set(it["attributes"]) == {"color", "material"}
    assert 0.88 <= np.mean([it["available"] for it in shop.items]) <= 1.0
    for u in shop.users:
        assert set(u["attributes"]) == {"country", "segment", "signup_days_ago"}


def test_sessions_and_causal_order(shop: Shop) -> None:
    """Removals and purchases follow a cart of that item in the same session; ratings follow a purchase."""
    carted: set[tuple[str, str, str]] = set()
    bought: set[tuple[str, str]] = set()
    for e in shop.events:
        key = (e["user_id"], e["item_id"], e["session_id"])
        if e["type"] == "rating":
            assert e["session_id"] is None
            assert (e["user_id"], e["item_id"]) in bought
            continue
        assert e["session_id"] is not None
        if e["type"] == "add_to_cart":
            carted.add(key)
        elif e["type"] in ("remove_from_cart", "purchase"):
            assert key in carted
        if e["type"] == "purchase":
            bought.add((e["user_id"], e["item_id"]))


def test_event_volume_follows_the_target(shop: Shop) -> None:
    assert 0.85 * 30 <= len(shop.events) / len(shop.users) <= 1.15 * 30
    small = generate_shop(n_users=500, n_items=200, seed=1, now=NOW, events_per_user_mean=10)
    assert 0.85 * 10 <= len(small.events) / 500 <= 1.15 * 10
    counts = Counter(e["type"] for e in shop.events)
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["rating"] > 0 and counts["remove_from_cart"] > 0


def test_content_reflects_topics(shop: Shop) -> None:
    """Items sharing a main topic share more title/description words than items that do not."""
    words = [_words(it) for it in shop.items]
    topic = shop.truth.item_topic
    same: list[float] = []
    diff: list[float] = []
    for a, b in combinations(range(len(words)), 2):
        (same if topic[a] == topic[b] else diff).append(_jaccard(words[a], words[b]))
    assert np.mean(same) > 1.6 * np.mean(diff)  # raw words, stop words ("by", "with") included
    # what the content model sees: TF-IDF discounts those shared words, and the gap widens
    tfidf = TfidfVectorizer().fit_transform([f"{it['title']} {it['description']}" for it in shop.items])
    sim = (tfidf @ tfidf.T).toarray()
    same_topic = topic[:, None] == topic[None, :]
    np.fill_diagonal(same_topic, False)
    assert sim[same_topic].mean() > 3.0 * sim[topic[:, None] != topic[None, :]].mean()
    # categories follow the main topic: each topic's items mostly share their first category
    first_cat: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for it, t in zip(shop.items, topic, strict=True):
        first_cat[int(t)][it["categories"][0]] += 1
    assert all(c.most_common(1)[0][1] == sum(c.values()) for c in first_cat.values())


def test_similar_tastes_touch_overlapping_items(shop: Shop) -> None:
    taste = shop.truth.user_taste
    seen: dict[int, set[str]] = defaultdict(set)
    for e in shop.events:
        seen[int(e["user_id"][5:]) - 1].add(e["item_id"])
    users = np.array(sorted(u for u, s in seen.items() if len(s) >= 5))
    unit = taste[users] / np.linalg.norm(taste[users], axis=1, keepdims=True)
    cos = unit @ unit.T
    ia, ib = np.triu_indices(len(users), k=1)
    close = cos[ia, ib] > 0.9
    rng = np.random.default_rng(0)
    pick_close = rng.choice(np.flatnonzero(close), 2000)
    pick_any = rng.choice(len(ia), 2000)

    def overlap(picks: np.ndarray) -> float:
        return float(np.mean([_jaccard(seen[users[ia[k]]], seen[users[ib[k]]]) for k in picks]))

    assert overlap(pick_close) > 1.5 * overlap(pick_any)


def test_recent_buyers_and_carters_buy_again_more(shop: Shop) -> None:
    truth = shop.truth
    hs = truth.horizon_start
    warm_ids = {
        e["user_id"]
        for e in shop.events
        if (e["type"] == "purchase" and hs - 30 * DAY <= e["timestamp"] < hs)
        or (e["type"] == "add_to_cart" and hs - 14 * DAY <= e["timestamp"] < hs)
    }
    warm = np.array([u["user_id"] in warm_ids for u in shop.users])
    eligible = truth.active_before_horizon
    y = truth.purchased_in_horizon
    assert warm[eligible].sum() >= 50
    assert y[eligible & warm].mean() > 1.5 * y[eligible & ~warm].mean()


def test_recently_idle_users_churn_more(shop: Shop) -> None:
    truth = shop.truth
    hs = truth.horizon_start
    recent = {e["user_id"] for e in shop.events if hs - 14 * DAY <= e["timestamp"] < hs}
    was_recent = np.array([u["user_id"] in recent for u in shop.users])
    eligible = truth.active_before_horizon
    y = truth.inactive_in_horizon
    assert y[eligible & ~was_recent].mean() > 1.5 * y[eligible & was_recent].mean()
    # and churners really do stop: no session starts after the churn date (ratings may still trickle in)
    churn = dict(zip((u["user_id"] for u in shop.users), truth.user_churn, strict=True))
    assert np.isfinite(truth.user_churn).mean() > 0.2
    assert all(e["timestamp"] < churn[e["user_id"]] + 3600 for e in shop.events if e["type"] != "rating")


def test_truth_agrees_with_the_event_log(shop: Shop) -> None:
    truth = shop.truth
    assert truth.horizon_start == NOW - 30 * DAY and truth.start == NOW - 120 * DAY
    before, bought, active = set(), set(), set()
    for e in shop.events:
        if e["timestamp"] < truth.horizon_start:
            before.add(e["user_id"])
        else:
            active.add(e["user_id"])
            if e["type"] == "purchase":
                bought.add(e["user_id"])
    ids = [u["user_id"] for u in shop.users]
    np.testing.assert_array_equal(truth.active_before_horizon, [u in before for u in ids])
    np.testing.assert_array_equal(truth.purchased_in_horizon, [u in bought for u in ids])
    np.testing.assert_array_equal(truth.inactive_in_horizon, [u not in active for u in ids])
    # both targets are neither rare nor universal among users with history
    eligible = truth.active_before_horizon
    assert 0.05 < truth.purchased_in_horizon[eligible].mean() < 0.6
    assert 0.1 < truth.inactive_in_horizon[eligible].mean() < 0.7


def test_to_event_log_keeps_every_event(shop: Shop) -> None:
    log = to_event_log(shop)
    assert len(log) == len(shop.events)
    assert list(log.user_ids) == [u["user_id"] for u in shop.users]
    assert list(log.item_ids) == [it["item_id"] for it in shop.items]
    for k in (0, len(shop.events) // 2, len(shop.events) - 1):
        e = shop.events[k]
        assert log.user_ids[log.user[k]] == e["user_id"] and log.item_ids[log.item[k]] == e["item_id"]
        assert log.type[k] == TYPE_CODE[e["type"]] and log.ts[k] == e["timestamp"]
    assert np.isnan(log.price[log.type == TYPE_CODE["view"]]).all()
    assert (log.price[log.type == TYPE_CODE["purchase"]] > 0).all()
    assert ((log.session == -1) == (log.type == TYPE_CODE["rating"])).all()
    sessions = {e["session_id"] for e in shop.events} - {None}
    assert len(np.unique(log.session[log.session >= 0])) == len(sessions)


def test_event_batches_cover_the_log_in_order(shop: Shop) -> None:
    batches = list(iter_event_batches(shop, size=1000))
    assert all(len(b) == 1000 for b in batches[:-1]) and 0 < len(batches[-1]) <= 1000
    assert [e for b in batches for e in b] == shop.events
    with pytest.raises(ValueError):
        next(iter_event_batches(shop, size=0))


@pytest.mark.parametrize(
    "kwargs",
    [{"n_topics": 1}, {"n_topics": 13}, {"n_users": 0}, {"n_items": 0}, {"days": 30}, {"horizon_days": 0}],
)
def test_bad_arguments_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate_shop(now=NOW, **kwargs)
