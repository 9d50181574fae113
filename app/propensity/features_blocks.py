"""The behavioural feature columns, block by block, over the visible events of one cut-off.

Each block is a function of ``Events`` (compact arrays of the events before the cut-off, sorted by
user then time) returning ``Column`` tuples; its temporaries die when it returns, which keeps the
peak memory of a 10M-event log near 1 GB. Everything is bincounts and sorts: no Python loop over
users or events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EVENT_TYPES, TYPE_CODE, EventLog, unique_sorted
from app.propensity.features_labels import DAY

PURCHASE = TYPE_CODE["purchase"]
CART = TYPE_CODE["add_to_cart"]
Column = tuple[str, str, NDArray[np.float32]]
"""(name, description, float32[n_users])"""


def _edges(sorted_keys: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(first, last) positions of each run of equal keys in a sorted array."""
    if len(sorted_keys) == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1])
    return np.r_[0, change + 1], np.r_[change, len(sorted_keys) - 1]


def per_user_edge(u: NDArray[Any], vals: NDArray[np.float64], n: int, fill: float, last: bool) -> NDArray[np.float64]:
    """Per user, the value at the user's last (or first) row of ``u``-sorted rows; ``fill`` without rows."""
    out = np.full(n, fill, dtype=np.float64)
    first, final = _edges(u)
    pos = final if last else first
    out[u[pos]] = vals[pos]
    return out


def unique_last(keys: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
    """Sorted unique keys and, for each, the position of its LAST occurrence in ``keys``."""
    uniq, idx_rev = np.unique(keys[::-1], return_index=True)
    return uniq, (len(keys) - 1 - idx_rev).astype(np.intp)


@dataclass(frozen=True)
class Events:
    """The events with ``ts < cutoff``, sorted by user then time, as compact parallel arrays.

    u int32 user; age float64 days before the cut-off (> 0); ty int8 type code; item int32 (-1 none);
    session int32 (-1 none); amount float32 money of purchase events (price x quantity, else 0).
    """

    u: NDArray[np.int32]
    age: NDArray[np.float64]
    ty: NDArray[np.int8]
    item: NDArray[np.int32]
    session: NDArray[np.int32]
    amount: NDArray[np.float32]
    n_users: int
    n_items: int
    cap: float

    @staticmethod
    def visible(log: EventLog, cutoff: float, cap: float) -> Events:
        idx = np.flatnonzero(log.ts < cutoff)
        idx = idx[np.lexsort((log.ts[idx], log.user[idx]))]
        ty = log.type[idx]
        is_p = ty == PURCHASE
        amount = np.zeros(len(idx), dtype=np.float32)
        amount[is_p] = log.revenue(idx[is_p])
        return Events(
            u=log.user[idx].astype(np.int32), age=(cutoff - log.ts[idx]) / DAY, ty=ty,
            item=log.item[idx].astype(np.int32), session=log.session[idx].astype(np.int32), amount=amount,
            n_users=log.n_users, n_items=max(log.n_items, 1), cap=cap,
        )  # fmt: skip

    def count(self, mask: NDArray[np.bool_], weights: NDArray[Any] | None = None) -> NDArray[np.float32]:
        w = None if weights is None else weights[mask]
        return np.bincount(self.u[mask], weights=w, minlength=self.n_users).astype(np.float32)

    def last_age(self, mask: NDArray[np.bool_]) -> NDArray[np.float32]:
        """Days since the user's latest event in ``mask``, capped; the cap when there is none."""
        return np.minimum(per_user_edge(self.u[mask], self.age[mask], self.n_users, self.cap, True), self.cap).astype(
            np.float32
        )

    def days(self) -> NDArray[np.int64]:
        """Day bucket per event: 0 = the last 24 h; ``age <= w  <=>  day < w``."""
        return np.ceil(self.age).astype(np.int64) - 1

    def pair_keys(self, other: NDArray[Any], base: int, mask: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
        u = self.u if mask is None else self.u[mask]
        o = other if mask is None else other[mask]
        return u.astype(np.int64) * base + o.astype(np.int64)


def recency(ev: Events) -> list[Column]:
    n = ev.n_users
    everything = np.ones(len(ev.u), dtype=bool)
    tenure = per_user_edge(ev.u, ev.age, n, 0.0, last=False).astype(np.float32)
    never = "(capped; never = cap)"
    return [
        ("days_since_last_event", f"days since the last event {never}", ev.last_age(everything)),
        ("days_since_last_purchase", f"days since the last purchase {never}", ev.last_age(ev.ty == PURCHASE)),
        ("days_since_last_cart", f"days since the last cart addition {never}", ev.last_age(ev.ty == CART)),
        ("tenure_days", "days since the first event", tenure),
    ]


def sessions(ev: Events, gap_minutes: float) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """(user, age of its latest event) per session: the session_id, or inactivity gaps longer than
    ``gap_minutes`` between a user's consecutive events that carry no session_id."""
    sess = ev.session.astype(np.int64)
    anon = np.flatnonzero(sess < 0)
    if len(anon):
        au, a_age = ev.u[anon], ev.age[anon]
        new = np.r_[True, (au[1:] != au[:-1]) | (-np.diff(a_age) * DAY > gap_minutes * 60.0)]
        sess[anon] = int(sess.max(initial=-1)) + 1 + np.cumsum(new) - 1
    _, last = unique_last(ev.pair_keys(sess, int(sess.max(initial=0)) + 1))
    return ev.u[last], ev.age[last]


def abandoned_carts(ev: Events) -> NDArray[np.bool_]:
    """bool[n_events]: cart additions never followed (before the cut-off) by a purchase of the same
    item, or by an item-less purchase (an order without line items)."""
    is_p = ev.ty == PURCHASE
    cart = np.flatnonzero(ev.ty == CART)
    cu, ci, c_age = ev.u[cart], ev.item[cart], ev.age[cart]
    converted = np.zeros(len(cart), dtype=bool)
    p_item = is_p & (ev.item >= 0)
    if len(cart) and p_item.any():
        p_keys, p_last = unique_last(ev.pair_keys(ev.item, ev.n_items, p_item))
        p_latest_age = ev.age[p_item][p_last]  # time-sorted per user: the last occurrence is the latest
        c_keys = cu.astype(np.int64) * ev.n_items + ci
        pos = np.minimum(np.searchsorted(p_keys, c_keys), len(p_keys) - 1)
        converted = (ci >= 0) & (p_keys[pos] == c_keys) & (p_latest_age[pos] < c_age)
    no_item = is_p & (ev.item < 0)
    latest_no_item = per_user_edge(ev.u[no_item], ev.age[no_item], ev.n_users, np.inf, last=True)
    latest_any = per_user_edge(ev.u[is_p], ev.age[is_p], ev.n_users, np.inf, last=True)
    converted |= np.where(ci >= 0, latest_no_item[cu], latest_any[cu]) < c_age
    out = np.zeros(len(ev.u), dtype=bool)
    out[cart[~converted]] = True
    return out


def windows(
    ev: Events,
    spans: tuple[int, ...],
    s_user: NDArray[np.int32],
    s_age: NDArray[np.float64],
    type_words: dict[str, str],
) -> list[Column]:
    """Per look-back window: events, active days, sessions (``sessions()`` output), revenue, abandoned
    carts, and counts per event type."""
    n, n_types = ev.n_users, len(EVENT_TYPES)
    day = ev.days()
    day_keys = unique_sorted(ev.pair_keys(day, int(day.max(initial=0)) + 1))
    d_user, d_day = np.divmod(day_keys, int(day.max(initial=0)) + 1)
    del day, day_keys
    abandoned = abandoned_carts(ev)
    is_p = ev.ty == PURCHASE
    cols: list[Column] = []
    for w in spans:
        inw = ev.age <= w
        cols += [
            (f"events_{w}d", f"events in the last {w} days", ev.count(inw)),
            (f"active_days_{w}d", f"days with activity in the last {w} days",
             np.bincount(d_user[d_day < w], minlength=n).astype(np.float32)),
            (f"sessions_{w}d", f"sessions in the last {w} days",
             np.bincount(s_user[s_age <= w], minlength=n).astype(np.float32)),
            (f"revenue_{w}d", f"money spent in the last {w} days", ev.count(inw & is_p, ev.amount)),
            (f"abandoned_carts_{w}d", f"cart additions in the last {w} days without a later purchase",
             ev.count(inw & abandoned)),
        ]  # fmt: skip
        by_type = np.bincount(ev.u[inw].astype(np.int64) * n_types + ev.ty[inw], minlength=n * n_types).reshape(
            n, n_types
        )
        cols += [
            (f"{name}_{w}d", f"{type_words[name]} in the last {w} days", by_type[:, code].astype(np.float32))
            for code, name in enumerate(EVENT_TYPES)
        ]
    return cols


def totals(ev: Events, s_user: NDArray[np.int32]) -> tuple[list[Column], NDArray[np.int64]]:
    """All-time totals, habits and the 30-day trend; also returns the distinct (user, item) pair keys
    (``user * n_items + item``) for the category breadth."""
    n, cap = ev.n_users, ev.cap
    is_p = ev.ty == PURCHASE
    everything = np.ones(len(ev.u), dtype=bool)
    events, purchases, revenue = ev.count(everything), ev.count(is_p), ev.count(is_p, ev.amount)
    n_sessions = np.bincount(s_user, minlength=n).astype(np.float32)
    has_item = ev.item >= 0
    i_keys, i_last = unique_last(ev.pair_keys(ev.item, ev.n_items, has_item))
    i_user = i_keys // ev.n_items
    day = ev.days()
    base = int(day.max(initial=0)) + 1
    n_pdays = np.bincount(unique_sorted(ev.pair_keys(day, base, is_p)) // base, minlength=n)
    first_p = per_user_edge(ev.u[is_p], ev.age[is_p], n, 0.0, last=False)
    between = np.where(n_pdays >= 2, (first_p - ev.last_age(is_p)) / np.maximum(n_pdays - 1, 1), cap)
    recent, before = ev.count(ev.age <= 30), ev.count((ev.age > 30) & (ev.age <= 60))
    per_purchase = (revenue / np.maximum(purchases, 1)).astype(np.float32)
    per_session = (events / np.maximum(n_sessions, 1)).astype(np.float32)
    cols: list[Column] = [
        ("events_total", "events ever", events),
        ("purchases_total", "purchases ever", purchases),
        ("revenue_total", "money spent ever", revenue),
        ("avg_purchase_value", "average money spent per purchase", per_purchase),
        ("sessions_total", "sessions ever", n_sessions),
        ("events_per_session", "average events per session", per_session),
        ("distinct_items", "distinct products interacted with", np.bincount(i_user, minlength=n).astype(np.float32)),
        ("distinct_items_30d", "distinct products interacted with in the last 30 days",
         np.bincount(i_user[ev.age[has_item][i_last] <= 30], minlength=n).astype(np.float32)),
        ("days_between_purchases", "average days between purchase days (cap when fewer than 2)",
         between.astype(np.float32)),
        ("activity_trend", "log change of events: last 30 days vs the 30 days before",
         np.log1p(recent) - np.log1p(before)),
    ]  # fmt: skip
    return cols, i_keys
