"""Propensity targets and their labels.

Time boundaries (the one convention every propensity function follows):

* features as of a cut-off ``T`` see the events with ``ts < T`` (strictly before);
* the label window of ``T`` with horizon ``h`` is the half-open interval ``T <= ts < T + h``.

So an event exactly at ``T`` is *not* a feature and *is* in the label window, and an event exactly
at ``T + h`` belongs to the features of cut-off ``T + h`` and to no label of cut-off ``T``. Windows of
consecutive cut-offs therefore tile time: every event is seen exactly once, either as history or as
outcome, and the features at ``T + h`` are exactly "history at T plus the label window of T".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.eventlog import TYPE_CODE, EventLog

DAY = 86_400.0
"""Seconds per day; all durations in features are days."""

TARGET_KINDS: tuple[str, ...] = ("purchase", "churn")


@dataclass(frozen=True)
class Target:
    """What a propensity model predicts, parsed from ``"purchase"``, ``"churn"`` or ``"purchase:<category>"``.

    kind:     "purchase" or "churn"
    category: the item category for ``purchase:<category>``, else None
    """

    kind: str
    category: str | None = None

    @staticmethod
    def parse(text: str) -> Target:
        """Validate a target string; raises ValueError with a readable message when it is not one."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("target must be a string: 'purchase', 'churn' or 'purchase:<category>'")
        kind, sep, category = text.strip().partition(":")
        if kind not in TARGET_KINDS:
            raise ValueError(
                f"unknown propensity target {text!r}: expected 'purchase', 'churn' or 'purchase:<category>'"
            )
        if not sep:
            return Target(kind)
        if kind != "purchase":
            raise ValueError(f"target {text!r}: only 'purchase' takes a category ('purchase:<category>')")
        if not category.strip():
            raise ValueError(f"target {text!r}: the category after 'purchase:' is empty")
        return Target(kind, category.strip())

    def __str__(self) -> str:
        return self.kind if self.category is None else f"{self.kind}:{self.category}"

    @property
    def description(self) -> str:
        """Marketer wording, e.g. 'purchases in category shoes'."""
        if self.kind == "churn":
            return "no activity"
        return "a purchase" if self.category is None else f"a purchase in category {self.category}"


def category_item_mask(
    item_categories: Sequence[Sequence[str]] | None, category: str, n_items: int
) -> NDArray[np.bool_]:
    """bool[n_items]: items carrying ``category``. Raises ValueError if no item in the catalog has it."""
    if item_categories is None:
        raise ValueError(f"target category {category!r} needs item categories, and none were given")
    if len(item_categories) != n_items:
        raise ValueError(f"item_categories has {len(item_categories)} rows for {n_items} items")
    mask = np.fromiter((category in cats for cats in item_categories), dtype=bool, count=n_items)
    if not mask.any():
        known = sorted({c for cats in item_categories for c in cats})
        shown = ", ".join(repr(c) for c in known[:20]) + (" ..." if len(known) > 20 else "")
        raise ValueError(f"unknown category {category!r}: no item has it (known: {shown or 'none'})")
    return mask


def active_before(log: EventLog, cutoff: float) -> NDArray[np.bool_]:
    """bool[n_users]: users with at least one event at ``ts < cutoff`` (the population a model is fit on)."""
    return np.bincount(log.user[log.ts < cutoff], minlength=log.n_users) > 0


def labels(
    log: EventLog,
    cutoff: float,
    horizon_days: float,
    target: Target | str,
    item_categories: Sequence[Sequence[str]] | None = None,
) -> NDArray[np.bool_]:
    """bool[n_users]: whether ``target`` happens in ``cutoff <= ts < cutoff + horizon_days * DAY``.

    purchase:     a purchase event in the window
    churn:        no event of any type in the window
    purchase:<c>: a purchase of an item in category c (``item_categories`` aligned with ``log.item_ids``)
    """
    target = Target.parse(target) if isinstance(target, str) else target
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    in_window = (log.ts >= cutoff) & (log.ts < cutoff + horizon_days * DAY)
    if target.kind == "churn":
        churned: NDArray[np.bool_] = np.bincount(log.user[in_window], minlength=log.n_users) == 0
        return churned
    hit = in_window & (log.type == TYPE_CODE["purchase"])
    if target.category is not None:
        in_cat = category_item_mask(item_categories, target.category, log.n_items)
        hit &= log.item >= 0
        hit[hit] = in_cat[log.item[hit]]
    return np.bincount(log.user[hit], minlength=log.n_users) > 0
