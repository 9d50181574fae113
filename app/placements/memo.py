"""Per-item results of a placement's rules, kept while the item's metadata stands.

A placement checks its attribute filter and its boosts on every candidate of every request: about two
hundred Python calls each, most of a placement request's CPU beyond the plain one (profiled). The
answer depends only on the rules and on the item's metadata, so it is kept per metadata object.
`MetaCache` hands out the same dict for an item until the catalog's epoch moves, and a new dict after:
a result is reused only for the very object it was computed from (the entry holds the object, so its
id cannot be reused by another while the entry lives).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 50_000
"""Bound per memo; reaching it starts afresh (a catalog this size costs a few MB here)."""


class MetaMemo(Generic[T]):
    """`get(meta, compute)`: compute(meta), once per metadata object."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[int, tuple[Any, T]] = {}

    def get(self, meta: Any, compute: Callable[[Any], T]) -> T:
        hit = self._entries.get(id(meta))
        if hit is not None and hit[0] is meta:
            return hit[1]
        if len(self._entries) >= self._max:
            self._entries = {}
        value = compute(meta)
        self._entries[id(meta)] = (meta, value)
        return value
