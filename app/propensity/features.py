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

from app.eventlog import EventLog
from app.propensity.features_attrs import attribute_columns, infer_attributes
from app.propensity.features_blocks import Events, recency, sessions, totals, windows
from app.propensity.features_category import category_columns, distinct_categories
from app.propensity.features_cycle import CYCLE_COLUMNS, ShopCycle, cycle_columns

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
    purchase_cycle:   adds the purchase-cycle columns of ``features_cycle`` (gaps, spend trend, season,
                      BG/NBD), whose expected purchases and season span ``horizon_days``
    numeric_attributes / categorical_attributes: user attribute columns (see ``features_attrs``)
    """

    windows: tuple[int, ...] = (7, 30, 90)
    recency_cap_days: float = 365.0
    session_gap_minutes: float = 30.0
    category: str | None = None
    numeric_attributes: tuple[str, ...] = ()
    categorical_attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    purchase_cycle: bool = False
    horizon_days: float = 30.0

    @staticmethod
    def fit(
        user_attributes: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        category: str | None = None,
        windows: tuple[int, ...] = (7, 30, 90),
        max_levels: int = 10,
        recency_cap_days: float = 365.0,
        purchase_cycle: bool = False,
        horizon_days: float = 30.0,
    ) -> FeatureSpec:
        """A spec with attribute columns inferred from ``user_attributes`` (≤ max_levels per attribute)."""
        numeric, categorical = infer_attributes(user_attributes, max_levels)
        return FeatureSpec(
            windows=tuple(sorted(windows)),
            recency_cap_days=recency_cap_days,
            category=category,
            numeric_attributes=numeric,
            categorical_attributes=categorical,
            purchase_cycle=purchase_cycle,
            horizon_days=horizon_days,
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


def build_features(
    log: EventLog,
    cutoff: float,
    spec: FeatureSpec | None = None,
    *,
    item_categories: Sequence[Sequence[str]] | None = None,
    user_attributes: Sequence[Mapping[str, Any] | None] | None = None,
    shop: ShopCycle | None = None,
) -> FeatureMatrix:
    """Features of all ``log.n_users`` users from the events with ``ts < cutoff`` (epoch seconds).

    item_categories: per item (aligned with ``log.item_ids``) its category names, or None
    user_attributes: per user (aligned with ``log.user_ids``) an attribute dict, or None
    shop: the shop-wide quantities of the purchase-cycle columns, when ``log`` holds only some of the
          shop's shoppers (a user shard: ``app.distributed``); None computes them from ``log``
    """
    spec = spec or FeatureSpec()
    n, cap = log.n_users, spec.recency_cap_days
    ev = Events.visible(log, cutoff, cap)
    s_user, s_age = sessions(ev, spec.session_gap_minutes)
    cols = recency(ev) + windows(ev, spec.windows, s_user, s_age, TYPE_WORDS)
    total_cols, item_pairs = totals(ev, s_user)
    cols += total_cols
    del s_user, s_age, total_cols
    if item_categories is not None:
        breadth = distinct_categories(
            item_pairs // ev.n_items, item_pairs % ev.n_items, item_categories, n, log.n_items
        )
        cols.append(("distinct_categories", "distinct categories interacted with", breadth))
    if spec.purchase_cycle:
        cols += cycle_columns(log, ev, cutoff, spec.horizon_days, shop)
    if spec.category is not None:
        cols += category_columns(ev, spec.category, spec.windows, item_categories, log.n_items)
    del ev, item_pairs
    a_names, a_desc, a_X = attribute_columns(user_attributes, n, spec.numeric_attributes, spec.categorical_attributes)
    X = np.empty((n, len(cols) + len(a_names)), dtype=np.float32)
    for k, (_, _, values) in enumerate(cols):
        X[:, k] = values
    X[:, len(cols) :] = a_X
    names = [name for name, _, _ in cols] + a_names
    descriptions = [description for _, description, _ in cols] + a_desc
    return FeatureMatrix(X=X, names=names, descriptions=descriptions, cutoff=float(cutoff), spec=spec)


def without_cycle(fm: FeatureMatrix, spec: FeatureSpec) -> FeatureMatrix:
    """``fm`` (built with the purchase-cycle columns) without them: exactly ``build_features`` under
    ``spec`` (which has ``purchase_cycle=False``), without a second pass over the events."""
    keep = [k for k, name in enumerate(fm.names) if name not in CYCLE_COLUMNS]
    return FeatureMatrix(X=np.ascontiguousarray(fm.X[:, keep]), names=[fm.names[k] for k in keep],
                         descriptions=[fm.descriptions[k] for k in keep], cutoff=fm.cutoff, spec=spec)  # fmt: skip
