"""An in-process cache of one model version's hot neighbour rows (CF or content), in fixed slots.

A published version's item-item rows never change (only new versions are written), so a row read
once serves every later request of that version; the cache lives in the version's `VersionArrays`
and is dropped with it, so a new version starts empty by construction. Deleted items are not this
cache's concern: the per-request metadata read filters them at once.

Rows sit in two preallocated matrices (indices int32[capacity, width], scores float32[capacity,
width], -1/0 padded) so a request gathers its history's rows with one fancy index instead of
unpacking and stacking each row; the least recently used row gives up its slot when full.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

ROW_CACHE_BYTES = 32 * 1024 * 1024
"""Memory bound per cached part and version (a k = 200 CF row takes 1.6 kB: ~20,000 rows)."""
MIN_CAPACITY = 256  # several requests' worth of rows, whatever the row width


class RowCache:
    """Neighbour rows of up to `capacity` items, keyed by the item's position in the version."""

    def __init__(self, n_items: int, budget_bytes: int = ROW_CACHE_BYTES) -> None:
        self._n_items = n_items
        self._budget = budget_bytes
        self._slot: dict[int, int] = {}  # item position -> slot; dict order is recency order
        self._free: list[int] = []
        self.indices = np.full((0, 0), -1, dtype=np.int32)
        self.scores = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._slot)

    def gather(self, positions: Sequence[int]) -> tuple[NDArray[np.int32], NDArray[np.float32], list[int]]:
        """The cached rows of `positions` as int32[h, width], float32[h, width] (copies, -1/0 padded),
        and the row numbers (into `positions`) that are not cached yet and were left empty."""
        slots, missing = [], []
        for row, pos in enumerate(positions):
            slot = self._slot.pop(pos, None)
            if slot is None:
                missing.append(row)
                slots.append(-1)
            else:
                self._slot[pos] = slot  # re-inserted: now the most recently used
                slots.append(slot)
        if not self.indices.shape[0]:
            h = len(positions)
            return np.full((h, 1), -1, dtype=np.int32), np.zeros((h, 1), dtype=np.float32), missing
        take = np.array(slots, dtype=np.intp)
        out_i, out_s = self.indices[take], self.scores[take]  # slot -1 reads the last row: blanked below
        if missing:
            out_i[missing] = -1
            out_s[missing] = 0.0
        return out_i, out_s, missing

    def complete(
        self,
        gathered: tuple[NDArray[np.int32], NDArray[np.float32]],
        positions: Sequence[int],
        missing: Sequence[int],
        fetched: Sequence[tuple[NDArray[np.int32], NDArray[np.float32]]],
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """`gather`'s rows with the `fetched` rows of its `missing` row numbers filled in (widened if
        a fetched row is longer); the fetched rows are cached too.

        Works on the gathered copies, so rows evicted by other requests meanwhile do not matter.
        """
        out_i, out_s = gathered
        width = max([out_i.shape[1], *(len(i) for i, _ in fetched)])
        if width > out_i.shape[1]:
            pad = ((0, 0), (0, width - out_i.shape[1]))
            out_i, out_s = np.pad(out_i, pad, constant_values=-1), np.pad(out_s, pad)
        for row, (indices, scores) in zip(missing, fetched, strict=True):
            out_i[row, : len(indices)] = indices
            out_s[row, : len(scores)] = scores
            self.store(positions[row], indices, scores)
        return out_i, out_s

    def store(self, position: int, indices: NDArray[np.int32], scores: NDArray[np.float32]) -> None:
        """Cache one row (an item without neighbours is stored as an empty row)."""
        width = len(indices)
        if width > self.indices.shape[1] or not self.indices.shape[0]:
            self._allocate(max(width, self.indices.shape[1], 1))
        slot = self._slot.pop(position, None)
        if slot is None:
            slot = self._free.pop() if self._free else self._evict()
        self._slot[position] = slot
        self.indices[slot, :width] = indices
        self.indices[slot, width:] = -1
        self.scores[slot, :width] = scores
        self.scores[slot, width:] = 0.0

    def _evict(self) -> int:
        oldest = next(iter(self._slot))
        return self._slot.pop(oldest)

    def _allocate(self, width: int) -> None:
        """(Re)size the slot matrices for rows of `width`; cached rows are kept while they fit."""
        capacity = max(MIN_CAPACITY, min(self._n_items, self._budget // (8 * width)))
        indices = np.full((capacity, width), -1, dtype=np.int32)
        scores = np.zeros((capacity, width), dtype=np.float32)
        kept = list(self._slot.items())[-capacity:]
        old_width = self.indices.shape[1]
        self._slot = {}
        for new_slot, (pos, old_slot) in enumerate(kept):
            indices[new_slot, :old_width] = self.indices[old_slot]
            scores[new_slot, :old_width] = self.scores[old_slot]
            self._slot[pos] = new_slot
        self._free = list(range(capacity - 1, len(kept) - 1, -1))
        self.indices, self.scores = indices, scores
