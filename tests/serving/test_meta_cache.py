"""The in-process item metadata cache: entries live for one catalog epoch, and never outlive a write."""

from __future__ import annotations

from app.recommend.meta_cache import MetaCache


def test_entries_are_kept_for_their_epoch_and_dropped_when_it_moves() -> None:
    cache = MetaCache()
    assert cache.known(b"e1") == {}
    cache.keep(b"e1", [("a", {"t": "A"}), ("b", None)])
    assert cache.known(b"e1") == {"a": {"t": "A"}}  # a miss is asked again: ingest may create it
    assert cache.known(b"e2") == {}


def test_entries_read_before_a_write_are_not_kept_after_it() -> None:
    """A slow request that read the old epoch must not leave its (maybe stale) answer for newer ones."""
    cache = MetaCache()
    cache.known(b"old")
    cache.known(b"new")  # a newer request saw the write meanwhile
    cache.keep(b"old", [("a", {"a": True})])
    assert cache.known(b"new") == {}


def test_the_bound_starts_the_epoch_afresh() -> None:
    cache = MetaCache(max_items=2)
    cache.known(None)
    cache.keep(None, [("a", {}), ("b", {})])
    cache.keep(None, [("c", {})])
    assert cache.known(None) == {"c": {}}
