"""Category features: breadth over the catalog's categories, and columns for one target category."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.propensity.features_blocks import CART, PURCHASE, Column, Events
from app.propensity.features_labels import category_item_mask


def distinct_categories(
    pair_user: NDArray[np.int64],
    pair_item: NDArray[np.int64],
    item_categories: Sequence[Sequence[str]],
    n_users: int,
    n_items: int,
) -> NDArray[np.float32]:
    """float32[n_users]: distinct categories per user over distinct (user, item) pairs, by one sparse
    product (user x item) @ (item x category). The catalog's category lists are read once, per item."""
    if len(item_categories) != n_items:
        raise ValueError(f"item_categories has {len(item_categories)} rows for {n_items} items")
    codes: dict[str, int] = {}
    lengths = np.fromiter((len(c) for c in item_categories), dtype=np.int64, count=n_items)
    flat = np.fromiter(
        (codes.setdefault(c, len(codes)) for cats in item_categories for c in cats),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    item_cat = sp.csr_matrix(
        (np.ones(len(flat), dtype=np.float32), flat, np.r_[0, np.cumsum(lengths)]),
        shape=(n_items, max(len(codes), 1)),
    )
    user_item = sp.csr_matrix(
        (np.ones(len(pair_user), dtype=np.float32), (pair_user, pair_item)), shape=(n_users, n_items)
    )
    indptr: NDArray[np.int64] = (user_item @ item_cat).tocsr().indptr
    return np.diff(indptr).astype(np.float32)


def category_columns(
    ev: Events, category: str, windows: Sequence[int], item_categories: Sequence[Sequence[str]] | None, n_items: int
) -> list[Column]:
    """Columns about one category (for a ``purchase:<category>`` target), over the visible events."""
    c = category
    in_cat = category_item_mask(item_categories, c, n_items)
    on = np.zeros(len(ev.item), dtype=bool)
    on[ev.item >= 0] = in_cat[ev.item[ev.item >= 0]]
    is_p, is_c = ev.ty == PURCHASE, ev.ty == CART
    cols: list[Column] = [
        (f"cat_events_{w}d", f"events on {c} products in the last {w} days", ev.count(on & (ev.age <= w)))
        for w in windows
    ]
    cols += [
        ("cat_events_total", f"events on {c} products ever", ev.count(on)),
        ("cat_purchases_total", f"purchases of {c} products ever", ev.count(on & is_p)),
        ("cat_carts_30d", f"cart additions of {c} products in the last 30 days", ev.count(on & is_c & (ev.age <= 30))),
        ("days_since_last_cat_event", f"days since the last event on {c} products (capped)", ev.last_age(on)),
        ("days_since_last_cat_purchase", f"days since the last {c} purchase (capped)", ev.last_age(on & is_p)),
    ]  # fmt: skip
    return cols
