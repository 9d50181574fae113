"""Merchandising rules over a ranked candidate list: pure (numpy only, no I/O), tested on tiny lists.

`meta` is an item's serving metadata (`store.codec.item_meta_json`): "c" categories (the first is the
primary one), "p" price, "b" brand, "g" tags, "x" scalar attributes.

Order of application, each step on the scores the previous one left:
exclusions -> boosts (multiplied) -> rotation (items shown in the window x (1 - strength)) ->
selection (MMR over content similarity when `lambda` is set, `max_per_category` as a hard cap) ->
pins inserted at their positions (pins bypass boosts, rotation and diversity: a marketer's explicit
choice, but not the filters or the shopper's exclusions, which the caller has checked).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.placements.schemas import Condition, Diversity, PlacementIn

Meta = Mapping[str, Any]


def _key(value: Any) -> tuple[str, Any]:
    """A value as compared by attribute conditions: numbers as numbers (1 == 1.0), but a bool is not
    a number (in Python True == 1), so {"organic": true} does not match 1."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    return ("s", value)


def accepted(conditions: Mapping[str, list[Any]]) -> dict[str, frozenset[tuple[str, Any]]]:
    """Attribute conditions as sets of `_key`s, for `attributes_in`."""
    return {name: frozenset(map(_key, values)) for name, values in conditions.items()}


def attributes_in(conditions: Mapping[str, frozenset[tuple[str, Any]]], meta: Meta | None) -> bool:
    """Every named attribute present with one of its accepted values (`accepted`)."""
    attrs = (meta or {}).get("x") or {}
    for name, keys in conditions.items():
        value = attrs.get(name)
        if value is None or _key(value) not in keys:
            return False
    return True


def attributes_hold(conditions: Mapping[str, list[Any]] | None, meta: Meta) -> bool:
    return not conditions or attributes_in(accepted(conditions), meta)


def matches(where: Condition, meta: Meta) -> bool:
    if where.category is not None and where.category not in (meta.get("c") or ()):
        return False
    if where.brand is not None and meta.get("b") != where.brand:
        return False
    if where.tags is not None and not set(where.tags).intersection(meta.get("g") or ()):
        return False
    price = meta.get("p")
    if where.min_price is not None and (price is None or price < where.min_price):
        return False
    if where.max_price is not None and (price is None or price > where.max_price):
        return False
    return attributes_hold(where.attributes, meta)


def primary_category(meta: Meta) -> str | None:
    categories = meta.get("c") or ()
    return str(categories[0]) if categories else None


def boost_factor(spec: PlacementIn, meta: Meta) -> float:
    """The product of the factors of the boosts whose condition `meta` meets (1.0 for none)."""
    factor = 1.0
    for boost in spec.boosts:
        if matches(boost.where, meta):
            factor *= boost.factor
    return factor


def adjusted_scores(
    ids: Sequence[str], scores: Sequence[float], metas: Sequence[Meta], spec: PlacementIn,
    shown: Mapping[str, float], now: float, factors: Sequence[float] | NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """float64[len(ids)]: each score times its matching boosts' factors, then the rotation demotion.
    `factors`: each item's `boost_factor`, when the caller has them already (serving memoises them)."""
    out = np.asarray(scores, dtype=np.float64).copy()
    if spec.boosts:
        out *= np.asarray(factors if factors is not None else [boost_factor(spec, m) for m in metas],
                          dtype=np.float64)
    if spec.rotation is not None and shown:
        cutoff = now - 60.0 * spec.rotation.window_minutes
        recent = np.fromiter((shown.get(i, -np.inf) >= cutoff for i in ids), dtype=bool, count=len(ids))
        out[recent] *= 1.0 - spec.rotation.strength
    return out


def select(
    scores: NDArray[np.float64], categories: Sequence[Hashable | None], diversity: Diversity | None, m: int,
    similarity: NDArray[np.float32] | None = None,
) -> list[int]:
    """Up to `m` candidate indices in display order.

    scores:     float64[P] adjusted scores (higher first; ties keep the incoming rank)
    similarity: float32[P, P] content cosine between candidates; used with `diversity.lambda_`
    MMR picks, one at a time, argmax  lambda * score/max(score) - (1 - lambda) * max sim to the picked.
    """
    cap = diversity.max_per_category if diversity else None
    lam = diversity.lambda_ if diversity else None
    count: dict[Hashable, int] = {}
    picked: list[int] = []

    def fits(k: int) -> bool:
        category = categories[k]
        return cap is None or category is None or count.get(category, 0) < cap

    def take(k: int) -> None:
        picked.append(k)
        category = categories[k]
        if category is not None:
            count[category] = count.get(category, 0) + 1

    if lam is None or similarity is None or lam >= 1.0:
        for k in np.argsort(-scores, kind="stable").tolist():
            if len(picked) >= m:
                break
            if fits(k):
                take(k)
        return picked
    top = float(scores.max()) if len(scores) else 0.0
    relevance = lam * (scores / top if top > 0 else np.zeros_like(scores))
    max_sim = np.zeros(len(scores), dtype=np.float64)
    value = relevance.copy()
    penalty = np.empty_like(value)
    # The values move only when an item is taken; one the cap refuses is just closed. A closed item's
    # max_sim is +inf, so its value stays -inf through the updates (lam < 1 here).
    for _ in range(len(scores)):
        if len(picked) >= m:
            break
        k = int(np.argmax(value))
        max_sim[k], value[k] = np.inf, -np.inf
        if fits(k):
            take(k)
            np.maximum(max_sim, similarity[k], out=max_sim)
            np.multiply(max_sim, lam - 1.0, out=penalty)
            np.add(relevance, penalty, out=value)
    return picked


def place_pins(chosen: list[str], pins: Sequence[tuple[str, int]]) -> list[str]:
    """`chosen` with each (item id, 1-based position) inserted, lowest position first, so every pin
    lands on its slot (or at the end of a shorter list)."""
    out = list(chosen)
    for item_id, position in sorted(pins, key=lambda p: p[1]):
        out.insert(min(position - 1, len(out)), item_id)
    return out
