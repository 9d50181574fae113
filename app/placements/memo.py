"""Per-item results of a placement's rules, kept while the item's metadata stands.

A placement checks its attribute filter and its boosts on every candidate of every request: about two
hundred Python calls each, most of a placement request's CPU beyond the plain one (profiled). The
answer depends only on the rules and on the item's metadata, so it is kept per metadata object.
`MetaCache` hands out the same dict for an item until the catalog's epoch moves, and a new dict after:
a result is reused only for the very object it was computed from (the entry holds the object, so its
id cannot be reused by another while the entry lives).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

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


class Verdicts:
    """A placement filter's verdicts: per metadata object (`by_meta`), and by model position for the
    candidates a model scored, so a request screens its ~200 candidates in one numpy lookup instead of
    a Python call each (`service.Query.screen`).

    The positional table (int8: 1 admitted, 0 refused, -1 not yet judged) belongs to one model version's
    arrays and one metadata epoch's entries (`MetaCache.known`); it holds both and starts afresh when
    either is another object, as `MetaMemo` does for a metadata object.
    """

    def __init__(self) -> None:
        self.by_meta: MetaMemo[bool] = MetaMemo()
        self._owners: tuple[object, object] | None = None
        self._table: NDArray[np.int8] = np.zeros(0, dtype=np.int8)

    def screen(
        self, item_ids: NDArray[np.object_], owner: object, known: Mapping[str, Any],
        positions: NDArray[np.int32], admits: Callable[[Any], bool],
    ) -> NDArray[np.bool_]:
        """bool[len(positions)]: False where `admits` refuses the item at that position of `item_ids`
        (the ids of `owner`, a model version's arrays); True where it admits it, `known` lacks it or
        the position is -1."""
        if self._owners is None or self._owners[0] is not owner or self._owners[1] is not known:
            self._owners = (owner, known)
            self._table = np.full(len(item_ids), -1, dtype=np.int8)
        table = self._table
        verdict = table[positions]
        verdict[positions < 0] = -1  # not a model item (-1 would index the last one)
        for k in np.flatnonzero(verdict < 0).tolist():
            if positions[k] < 0:
                continue
            meta = known.get(item_ids[positions[k]])
            if meta is not None:  # a missing entry may appear with no epoch move: judged once read
                verdict[k] = table[positions[k]] = self.by_meta.get(meta, admits)
        admitted: NDArray[np.bool_] = verdict != 0
        return admitted


class ByPosition:
    """Per-model-position results of a function of an item's metadata (float64; NaN: not computed yet),
    so a request reads a pool's boost factors or category codes in one numpy lookup instead of a
    Python call per item. Like `Verdicts`, the table belongs to one model version's arrays and one
    metadata epoch's entries and starts afresh when either is another object; a result is kept only
    when computed from the very entry `known` holds."""

    def __init__(self) -> None:
        self._owners: tuple[object, object] | None = None
        self._table: NDArray[np.float64] = np.zeros(0)

    def values(
        self, item_ids: NDArray[np.object_], owner: object, known: Mapping[str, Any], positions: NDArray[np.int64],
        metas: Callable[[int], Any], compute: Callable[[Any], float],
    ) -> NDArray[np.float64]:
        """float64[len(positions)]: compute(meta) of each entry; `metas(k)` is entry k's metadata
        (asked only when the table lacks it); a position of -1 (an item the model lacks) is computed."""
        if self._owners is None or self._owners[0] is not owner or self._owners[1] is not known:
            self._owners = (owner, known)
            self._table = np.full(len(item_ids), np.nan)
        table = self._table
        out = table[positions]
        out[positions < 0] = np.nan
        for k in np.flatnonzero(np.isnan(out)).tolist():
            meta = metas(k)
            out[k] = value = compute(meta)
            at = int(positions[k])
            if at >= 0 and known.get(item_ids[at]) is meta:
                table[at] = value
        return out
