"""Reading the live catalog state the way serving does, whatever its number of `{live:B}` buckets."""

from __future__ import annotations

from typing import Any

from app.store.keys import Keys


def popularity(rds: Any, keys: Keys, category: str | None = None) -> dict[str, float]:
    """Every member of the overall (or one category's) live popularity, over all buckets, with the
    bucket's own score: buckets share one T0 unless ingest rebased one (`store.live_reads` merges then)."""
    out: dict[str, float] = {}
    for b in range(keys.buckets):
        key = keys.popularity_category(category, b) if category else keys.popularity(b)
        out.update({m.decode(): float(s) for m, s in rds.zrange(key, 0, -1, withscores=True)})
    return out


def categories(rds: Any, keys: Keys) -> set[bytes]:
    """The category names with a live popularity set, over all buckets."""
    return set().union(*(rds.smembers(keys.popularity_categories(b)) for b in range(keys.buckets)))


def meta_count(rds: Any, keys: Keys) -> int:
    """Items with live metadata, over all buckets."""
    return sum(int(rds.hlen(keys.item_meta(b))) for b in range(keys.buckets))


def epochs(rds: Any, keys: Keys) -> set[float]:
    """The T0 of every bucket that has one."""
    raw = [rds.get(keys.popularity_epoch(b)) for b in range(keys.buckets)]
    return {float(r) for r in raw if r is not None}
