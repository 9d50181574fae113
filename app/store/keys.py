"""Every Redis key Shopmind uses is built here, under one configurable prefix.

Keys carry a hash tag (the part in braces) naming what must stay on one Redis Cluster slot, because
one script or one atomic step touches it together:

- `{u:ID}`: one shopper's real-time state (history, purchases, seen and shown items);
- `{m:VERSION}`: one model version's parts;
- `{model}`: the version pointer, the version registries and the rebuild lock (the flip checks the
  lock and moves the pointer in one script);
- `{live}`: the catalog's live state: item metadata, popularity sets and their T0, recommendation
  counters (ingest's popularity script reads the metadata and writes the sets in one call);
- `{live:B}`: with `buckets` > 1 (`SHOPMIND_REDIS_BUCKETS`), item metadata and the popularity sets are
  split by item id into that many buckets, each with its own T0, so no one master carries every
  ingest batch's popularity writes and every metadata read. A bucket holds whole items: an item's
  metadata and all its popularity entries share its slot, so ingest's script still reads the one to
  write the others. Recommendation counters, the metadata epoch and the hydrate sentinel stay `{live}`.

Keys without a tag (rate limits, sessions, queues) are single-key and land wherever they hash.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings


@dataclass(frozen=True)
class Keys:
    prefix: str = "sm:"
    buckets: int = 1
    """How many `{live:B}` buckets item metadata and popularity are split into (1: all on `{live}`)."""
    popularity_half_life_days: float = 7.0
    """The live popularity's half-life: buckets whose T0 differ (ingest rebases each on its own) are
    compared by it when a read merges them (`store.live_reads`)."""

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        """The key layout the settings describe."""
        return cls(settings.redis_prefix, settings.live_buckets, settings.popularity_half_life_days)

    def bucket(self, item_id: str) -> int:
        """The bucket of an item: CRC-32 of its id, so every process and Lua-free client agrees."""
        return zlib.crc32(item_id.encode()) % self.buckets if self.buckets > 1 else 0

    def by_bucket(self, item_ids: Iterable[str]) -> dict[int, list[str]]:
        """Item ids grouped by bucket, in their order within each group."""
        groups: dict[int, list[str]] = {}
        for item_id in item_ids:
            groups.setdefault(self.bucket(item_id), []).append(item_id)
        return groups

    # --- real-time state, written on every accepted event -------------------------------------
    def history(self, user_id: str) -> str:
        """List of "ts|type|item_id", newest first, capped at settings.history_length."""
        return f"{self.prefix}{{u:{user_id}}}:hist"

    def purchased(self, user_id: str) -> str:
        """Set of item ids the user bought (excluded from recommendations)."""
        return f"{self.prefix}{{u:{user_id}}}:bought"

    def seen(self, user_id: str) -> str:
        """Set of every item id the user interacted with (for exclude_seen)."""
        return f"{self.prefix}{{u:{user_id}}}:seen"

    def shown(self, user_id: str) -> str:
        """Sorted set "placement|item_id" -> when it was last shown to the shopper there (epoch seconds),
        for placement rotation; capped, expiring (`placements.serving`)."""
        return f"{self.prefix}{{u:{user_id}}}:shown"

    def user_keys(self, user_id: str) -> list[str]:
        """Every per-user key, for erasure and merge."""
        return [self.history(user_id), self.purchased(user_id), self.seen(user_id), self.shown(user_id)]

    @property
    def _live(self) -> str:
        return f"{self.prefix}{{live}}:"

    def _bucket(self, bucket: int) -> str:
        return self._live if self.buckets <= 1 else f"{self.prefix}{{live:{bucket}}}:"

    def _pop(self, bucket: int) -> str:
        return f"{self._bucket(bucket)}pop:"

    def popularity(self, bucket: int = 0) -> str:
        """Sorted set item_id -> forward-decayed interaction weight (see events.realtime)."""
        return f"{self._pop(bucket)}all"

    def popularity_category(self, category: str, bucket: int = 0) -> str:
        return f"{self._pop(bucket)}cat:{category}"

    def popularity_epoch(self, bucket: int = 0) -> str:
        """T0 of the forward-decayed popularity scores, epoch seconds (moved forward by rebuilds and,
        when it grows old, by ingest: see events.realtime). One per bucket: read with the bucket's sets."""
        return f"{self._pop(bucket)}t0"

    def popularity_mark(self, key: str, bucket: int = 0) -> str:
        """A copy of a popularity key (a set, or `popularity_epoch`) taken when a rebuild snapshots the
        event log, so its swap can add what ingest put on the set since (`worker.hydrate`)."""
        return f"{self._pop(bucket)}mark:{key.removeprefix(self._pop(bucket))}"

    def popularity_staged(self, key: str, bucket: int = 0) -> str:
        """Where a rebuild writes its recomputed version of a popularity set before the swap (a key of
        its own: a suffix on the live key could be another category's name)."""
        return f"{self._pop(bucket)}staged:{key.removeprefix(self._pop(bucket))}"

    def popularity_categories(self, bucket: int = 0) -> str:
        """Set of categories that have a popularity sorted set (for erasure and re-hydration)."""
        return f"{self._pop(bucket)}cats"

    def item_meta(self, bucket: int = 0) -> str:
        """Hash item_id -> JSON {"c": categories, "p": price, "a": available, "t": title}, of the
        items of one bucket (`bucket(item_id)`).

        An item without an entry here is deleted (or unknown): it never appears in any list.
        """
        return f"{self._bucket(bucket)}items:meta"

    def item_meta_of(self, item_id: str) -> str:
        """The metadata hash that holds this item."""
        return self.item_meta(self.bucket(item_id))

    def item_meta_epoch(self) -> str:
        """A token set afresh by every write to `item_meta` (upsert, delete, hydrate): API processes
        keep the metadata they read until it changes (`recommend.meta_cache`)."""
        return f"{self._live}items:meta:epoch"

    def placements_epoch(self) -> str:
        """A token set afresh by every placement write: API processes reload placements when it moves."""
        return f"{self.prefix}placements:epoch"

    def experiment_exposures(self) -> str:
        """List of exposures ("id|variant|user|token|ts") waiting for the batched COPY to Postgres."""
        return f"{self.prefix}experiments:exposures"

    def recommendation_stats(self, strategy: str) -> str:
        """Hash event type -> count of events that carried a recommendation_id of this strategy."""
        return f"{self._live}recstats:{strategy}"

    def recommendation_strategies(self) -> str:
        return f"{self._live}recstats:strategies"

    def realtime_skipped(self) -> str:
        """Counter of events whose real-time update was skipped while Redis was unreachable."""
        return f"{self.prefix}realtime:skipped"

    # --- models: versioned, published by flipping one pointer --------------------------------
    def model_pointer(self) -> str:
        return f"{self.prefix}{{model}}:current"

    def model_versions(self) -> str:
        """Sorted set version -> publish time, of versions not yet scheduled to expire."""
        return f"{self.prefix}{{model}}:versions"

    def model_expiring(self) -> str:
        """Sorted set version -> the time its keys expire, of replaced versions still in their grace
        period: erasure must reach their per-user state too."""
        return f"{self.prefix}{{model}}:expiring"

    def model(self, version: str, part: str) -> str:
        return f"{self.prefix}{{m:{version}}}:{part}"

    def rebuild_lock(self) -> str:
        return f"{self.prefix}{{model}}:lock:rebuild"

    def rebuild_queue(self) -> str:
        """List of pending on-demand rebuild job ids (pushed by the API, popped by the worker)."""
        return f"{self.prefix}rebuild:queue"

    def live_content(self) -> str:
        """Hash item_id -> packed content neighbours computed on upsert, until the next rebuild."""
        return f"{self.prefix}content:live"

    def erasure_epoch(self) -> str:
        """Counter bumped by every user erasure, so API processes reload cached user id tables."""
        return f"{self.prefix}users:erasures"

    def hydrated(self) -> str:
        """Sentinel set after real-time state was rebuilt from Postgres; gone after a flush.

        In the `{live}` layout's own name: a Redis still holding the older untagged layout (`items:meta`,
        `pop:all`, `hydrated`) lacks it, so the worker hydrates the new keys from Postgres at once; so
        does one split into a different number of buckets (the count is in the name)."""
        return f"{self._live}hydrated" if self.buckets <= 1 else f"{self._live}hydrated:{self.buckets}"

    def rate_limit(self, key_id: str) -> str:
        return f"{self.prefix}rl:{key_id}"

    def address_attempts(self, kind: str, address: str) -> str:
        """Token bucket of one client address's failed authentications or dashboard logins."""
        return f"{self.prefix}rl-addr:{kind}:{address}"

    def dashboard_session(self, token_hash: str) -> str:
        """String -> a reference to the key that logged in (`KeyVerifier.reference`); expires with the
        session (12 h).

        Keyed by the SHA-256 of the cookie's token, so a Redis dump holds no usable session.
        """
        return f"{self.prefix}dash:session:{token_hash}"
