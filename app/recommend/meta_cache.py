"""Item metadata (filters, titles) kept in process between catalog writes.

Every write to the `items:meta` hash (an upsert, a delete, a rebuild's hydrate) also sets
`items:meta:epoch` to a fresh random token (`codec.new_meta_epoch`; random rather than a counter, so a
Redis that lost its data cannot repeat an old value), and every request reads it in its first round
trip. Entries are
kept only for the epoch the request saw, so the first request after a write drops them all: a deleted
item still disappears at once, and a request spares the metadata round trip while the catalog is
still. Only present items are kept: an id missing from the hash may be created by the next event
(ingest adds placeholder entries without moving the epoch), so a miss is asked again every time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_ITEMS = 200_000
"""Bound on the entries kept (~0.5 kB each); reaching it starts the epoch's entries afresh."""

Meta = dict[str, Any]


class MetaCache:
    """Decoded `items:meta` entries of one epoch (the raw value of `items:meta:epoch`; None if unset)."""

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self._max = max_items
        self._epoch: bytes | None = None
        self._items: dict[str, Meta] = {}

    def known(self, epoch: bytes | None) -> dict[str, Meta]:
        """The entries valid at `epoch` (read-only for the caller); a new epoch starts empty."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._items = {}
        return self._items

    def current(self) -> dict[str, Meta]:
        """The entries of the epoch the latest request saw (read-only), for a step that runs right after
        it on the same items (`placements.serving`); what is missing there must be read."""
        return self._items

    def keep(self, epoch: bytes | None, fetched: Iterable[tuple[str, Meta | None]]) -> None:
        """Remember entries read after `epoch` was read. Ignored when the epoch has moved on since:
        they may predate the write that moved it."""
        if epoch != self._epoch:
            return
        if len(self._items) >= self._max:
            self._items = {}
        self._items.update((item_id, meta) for item_id, meta in fetched if meta is not None)
