"""Behavioural features of every user as of a cut-off, vectorised over the whole event log.

Only events with ``ts < cutoff`` are read (see ``features_labels`` for the exact boundaries), so the
same function builds training features at a past cut-off and scoring features at "now" without
any chance of peeking. Everything is bincounts, sorts and one sparse product: no Python loop over
users or events (attribute dicts and catalog category lists are read once, per row).

All durations are in days. A window of ``w`` days is ``cutoff - w days <= ts < cutoff``. "Never"
recencies (no purchase yet) are the cap (``recency_cap_days``), not NaN, so every behavioural
column is finite; only missing numeric user attributes are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EVENT_TYPES, TYPE_CODE, EventLog
from app.propensity.features_attrs import attribute_columns, infer_attributes
from app.propensity.features_category import category_columns, distinct_categories
from app.propensity.features_labels import DAY

PURCHASE = TYPE_CODE["purchase"]
CART = TYPE_CODE["add_to_cart"]
TYPE_WORDS: dict[str, str] = {  # event type -> plural noun for descriptions and explanations
    "view": "product views", "click": "clicks", "add_to_cart": "cart additions", "remove_from_cart": "cart removals",
    "purchase": "purchases", "rating": "ratings", "like": "likes", "dislike": "dislikes", "bookmark": "bookmarks",
}  # fmt: skip


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns a feature matrix has; fixed at training time and reused for scoring.

    windows:          look-back windows in days for the windowed counts
    recency_cap_days: recencies are capped here; "never" is the cap
    session_gap_minutes: events without a session_id split into sessions at gaps longer than this
    category:         adds per-category columns (for a ``purchase:<category>`` target)
    numeric_attributes / categorical_attributes: user attribute columns (see ``features_attrs``)
    """

    windows: tuple[int, ...] = (7, 30, 90)
    recency_cap_days: float = 365.0
    session_gap_minutes: float = 30.0
    category: str | None = None
    numeric_attributes: tuple[str, ...] = ()
    categorical_attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @staticmethod
    def fit(
        user_attributes: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        category: str | None = None,
        windows: tuple[int, ...] = (7, 30, 90),
        max_levels: int = 10,
        recency_cap_days: float = 365.0,
    ) -> FeatureSpec:
        """A spec with attribute columns inferred from ``user_attributes`` (≤ max_levels per attribute)."""
        numeric, categorical = infer_attributes(user_attributes, max_levels)
        return FeatureSpec(
            windows=tuple(sorted(windows)),
            recency_cap_days=recency_cap_days,
            category=category,
            numeric_attributes=numeric,
            categorical_attributes=categorical,
        )


@dataclass(frozen=True)
class FeatureMatrix:
    """X: float32[n_users, n_features] (row = dense user index), with a name and a description per column."""

    X: NDArray[np.float32]
    names: list[str]
    descriptions: list[str]
    cutoff: float
    spec: FeatureSpec = field(default_factory=FeatureSpec)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def column(self, name: str) -> NDArray[np.float32]:
        return self.X[:, self.index(name)]


class _Columns:
    def __init__(self, n: int) -> None:
        self.n = n
        self.names: list[str] = []
        self.descriptions: list[str] = []
        self.arrays: list[NDArray[Any]] = []

    def add(self, name: str, description: str, values: NDArray[Any]) -> None:
        self.names.append(name)
        self.descriptions.append(description)
        self.arrays.append(values)


def _edges(sorted_keys: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(first, last) positions of each run of equal keys in a sorted array."""
    if len(sorted_keys) == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1])
    return np.r_[0, change + 1], np.r_[change, len(sorted_keys) - 1]


def _per_user_edge(
    u: NDArray[np.intp], vals: NDArray[np.float64], n: int, fill: float, last: bool
) -> NDArray[np.float64]:
    """Per user, the value at the user's last (or first) row of ``u``-sorted rows; ``fill`` without rows."""
    out = np.full(n, fill, dtype=np.float64)
    first, final = _edges(u)
    pos = final if last else first
    out[u[pos]] = vals[pos]
    return out


def _unique(keys: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted unique keys (a sort; numpy's hash-based ``np.unique`` is slower on large int64 arrays)."""
    s = np.sort(keys)
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def _unique_last(keys: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
    """Sorted unique keys and, for each, the position of its LAST occurrence in ``keys``."""
    uniq, idx_rev = np.unique(keys[::-1], return_index=True)
    return uniq, (len(keys) - 1 - idx_rev).astype(np.intp)


def build_features(
    log: EventLog,
    cutoff: float,
    spec: FeatureSpec | None = None,
    *,
    item_categories: Sequence[Sequence[str]] | None = None,
    user_attributes: Sequence[Mapping[str, Any] | None] | None = None,
) -> FeatureMatrix:
    """Features of all ``log.n_users`` users from the events with ``ts < cutoff`` (epoch seconds).

    item_categories: per item (aligned with ``log.item_ids``) its category names, or None
    user_attributes: per user (aligned with ``log.user_ids``) an attribute dict, or None
    """
    spec = spec or FeatureSpec()
    n, cap = log.n_users, spec.recency_cap_days
    cols = _Columns(n)
    idx = np.flatnonzero(log.ts < cutoff)
    idx = idx[np.lexsort((log.ts[idx], log.user[idx]))]  # by user, then time
    u = log.user[idx].astype(np.intp)
    ts = log.ts[idx]
    ty = log.type[idx]
    item = log.item[idx].astype(np.int64)
    age = (cutoff - ts) / DAY  # > 0
    day = np.ceil(age).astype(np.int64) - 1  # 0 = the last 24 h; age <= w  <=>  day < w
    is_p, is_c = ty == PURCHASE, ty == CART

    def count(mask: NDArray[np.bool_], weights: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        w = None if weights is None else weights[mask]
        return np.bincount(u[mask], weights=w, minlength=n).astype(np.float64)

    def last_age(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        return np.minimum(_per_user_edge(u[mask], age[mask], n, cap, last=True), cap)

    # Recency and tenure.
    everything = np.ones(len(u), dtype=bool)
    cols.add("days_since_last_event", "days since the last event (capped; never = cap)", last_age(everything))
    cols.add("days_since_last_purchase", "days since the last purchase (capped; never = cap)", last_age(is_p))
    cols.add("days_since_last_cart", "days since the last cart addition (capped; never = cap)", last_age(is_c))
    cols.add("tenure_days", "days since the first event", _per_user_edge(u, age, n, 0.0, last=False))

    # Money: price x quantity of purchase events (quantity = value when positive, else 1).
    value = log.value[idx].astype(np.float64)
    qty = np.where(np.isfinite(value) & (value > 0), value, 1.0)
    price = np.nan_to_num(log.price[idx].astype(np.float64), nan=0.0)
    amount = np.where(is_p, price * qty, 0.0)

    # Active days: distinct (user, day) pairs.
    day_keys = _unique(u.astype(np.int64) * (int(day.max(initial=0)) + 1) + day)
    d_user, d_day = np.divmod(day_keys, int(day.max(initial=0)) + 1)

    # Sessions: the session_id, or 30-minute inactivity gaps for events without one.
    sess = log.session[idx].astype(np.int64)
    anon = np.flatnonzero(sess < 0)
    if len(anon):
        au, ats = u[anon], ts[anon]
        new = np.r_[True, (au[1:] != au[:-1]) | (np.diff(ats) > spec.session_gap_minutes * 60.0)]
        sess[anon] = int(sess.max(initial=-1)) + 1 + np.cumsum(new) - 1
    _, s_last = _unique_last(u.astype(np.int64) * (int(sess.max(initial=0)) + 1) + sess)
    s_user, s_age = u[s_last], age[s_last]  # a session's age is that of its latest event

    # Cart additions never followed by a purchase of the same item (or by an item-less purchase).
    ni = max(log.n_items, 1)
    cart = np.flatnonzero(is_c)
    cu, ci, cts = u[cart], item[cart], ts[cart]
    converted = np.zeros(len(cart), dtype=bool)
    p_item = np.flatnonzero(is_p & (item >= 0))
    if len(cart) and len(p_item):
        p_keys, p_last = _unique_last(u[p_item].astype(np.int64) * ni + item[p_item])
        p_latest = ts[p_item][p_last]  # rows are time-sorted per user: last occurrence = latest
        c_keys = cu.astype(np.int64) * ni + ci
        pos = np.minimum(np.searchsorted(p_keys, c_keys), len(p_keys) - 1)
        converted = (ci >= 0) & (p_keys[pos] == c_keys) & (p_latest[pos] > cts)
    no_item_p = is_p & (item < 0)
    last_no_item = _per_user_edge(u[no_item_p], ts[no_item_p], n, -np.inf, last=True)
    last_any = _per_user_edge(u[is_p], ts[is_p], n, -np.inf, last=True)
    converted |= np.where(ci >= 0, last_no_item[cu], last_any[cu]) > cts
    abandoned = np.zeros(len(u), dtype=bool)
    abandoned[cart[~converted]] = True

    # Windowed counts.
    n_types = len(EVENT_TYPES)
    for w in spec.windows:
        inw = age <= w
        cols.add(f"events_{w}d", f"events in the last {w} days", count(inw))
        cols.add(
            f"active_days_{w}d",
            f"days with activity in the last {w} days",
            np.bincount(d_user[d_day < w], minlength=n).astype(np.float64),
        )
        cols.add(
            f"sessions_{w}d",
            f"sessions in the last {w} days",
            np.bincount(s_user[s_age <= w], minlength=n).astype(np.float64),
        )
        cols.add(f"revenue_{w}d", f"money spent in the last {w} days", count(inw & is_p, amount))
        cols.add(
            f"abandoned_carts_{w}d",
            f"cart additions in the last {w} days without a later purchase",
            count(inw & abandoned),
        )
        by_type = np.bincount(u[inw] * n_types + ty[inw], minlength=n * n_types).reshape(n, n_types)
        for code, name in enumerate(EVENT_TYPES):
            cols.add(
                f"{name}_{w}d",
                f"{TYPE_WORDS[name]} in the last {w} days",
                by_type[:, code].astype(np.float64),
            )

    # All-time totals, breadth, habits, trend.
    events_total = count(everything)
    purchases = count(is_p)
    revenue = count(is_p, amount)
    sessions_total = np.bincount(s_user, minlength=n).astype(np.float64)
    cols.add("events_total", "events ever", events_total)
    cols.add("purchases_total", "purchases ever", purchases)
    cols.add("revenue_total", "money spent ever", revenue)
    cols.add("avg_purchase_value", "average money spent per purchase", revenue / np.maximum(purchases, 1.0))
    cols.add("sessions_total", "sessions ever", sessions_total)
    cols.add("events_per_session", "average events per session", events_total / np.maximum(sessions_total, 1.0))
    has_item = item >= 0
    i_keys, i_last = _unique_last(u[has_item].astype(np.int64) * max(log.n_items, 1) + item[has_item])
    i_user = i_keys // max(log.n_items, 1)
    cols.add("distinct_items", "distinct products interacted with", np.bincount(i_user, minlength=n).astype(float))
    cols.add(
        "distinct_items_30d",
        "distinct products interacted with in the last 30 days",
        np.bincount(i_user[age[has_item][i_last] <= 30], minlength=n).astype(np.float64),
    )
    if item_categories is not None:
        cols.add(
            "distinct_categories",
            "distinct categories interacted with",
            distinct_categories(i_user, i_keys % max(log.n_items, 1), item_categories, n, log.n_items),
        )
    pday = _unique(u[is_p].astype(np.int64) * (int(day.max(initial=0)) + 1) + day[is_p])
    n_pdays = np.bincount(pday // (int(day.max(initial=0)) + 1), minlength=n).astype(np.float64)
    first_p = _per_user_edge(u[is_p], age[is_p], n, 0.0, last=False)
    span = np.where(n_pdays >= 2, (first_p - last_age(is_p)) / np.maximum(n_pdays - 1, 1.0), cap)
    cols.add("days_between_purchases", "average days between purchase days (cap when fewer than 2)", span)
    recent, before = count(age <= 30), count((age > 30) & (age <= 60))
    cols.add(
        "activity_trend",
        "log change of events: last 30 days vs the 30 days before",
        np.log1p(recent) - np.log1p(before),
    )

    if spec.category is not None:
        for name, description, values in category_columns(
            spec.category, spec.windows, item_categories, log.n_items, item, age, is_p, is_c, count, last_age
        ):
            cols.add(name, description, values)

    X = np.empty((n, len(cols.arrays)), dtype=np.float32)
    for k, arr in enumerate(cols.arrays):
        X[:, k] = arr
    names, descriptions = cols.names, cols.descriptions
    a_names, a_desc, a_X = attribute_columns(user_attributes, n, spec.numeric_attributes, spec.categorical_attributes)
    if a_names:
        X = np.hstack([X, a_X])
        names, descriptions = names + a_names, descriptions + a_desc
    return FeatureMatrix(X=X, names=names, descriptions=descriptions, cutoff=float(cutoff), spec=spec)
