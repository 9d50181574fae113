"""Readable reasons for each recommended item, from what drove its score."""

from __future__ import annotations

from typing import Any

VERBS = {
    "view": "viewed", "click": "clicked", "add_to_cart": "added to your cart", "remove_from_cart": "looked at",
    "purchase": "bought", "rating": "rated", "like": "liked", "bookmark": "saved", "dislike": "looked at",
}


def _name(item_id: str, meta: dict[str, Any] | None) -> str:
    title = (meta or {}).get("t")
    return f"“{title}”" if title else f"item {item_id}"


def because(
    cf: float, content: float, source_id: str, source_meta: dict[str, Any] | None, source_type: str
) -> str:
    verb = VERBS.get(source_type, "viewed")
    name = _name(source_id, source_meta)
    if cf >= content:
        return f"shoppers who {verb.replace('your', 'their')} {name} also chose this"
    return f"similar to {name} you {verb}"


def popular(meta: dict[str, Any] | None, category: str | None) -> str:
    if category:
        return f"popular in {category}"
    categories = (meta or {}).get("c") or []
    return f"popular in {categories[0]}" if categories else "popular right now"
