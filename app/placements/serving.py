"""Placements on the serving path: resolve a name (cached per epoch), then arrange the scored list.

A request with `?placement=` costs, beyond the plain request: one round trip that reads the placement
epoch (and the shopper's recently shown items when the placement rotates), a deeper candidate pool,
the rules (`rules`), and one pipelined write of what was shown. Metadata comes from the recommender's
per-epoch cache; only items it lacks (a pin not yet seen) and the shopper's exclusions of pins cost a
read. Requests without a placement never reach this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import scipy.sparse as sp
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import PlacementNotFound, ValidationFailed
from app.placements import rules
from app.placements.schemas import Kind, PlacementIn
from app.placements.service import load_all
from app.recommend.meta_cache import MetaCache
from app.recommend.model_cache import ModelCache
from app.recommend.schemas import Recommendations, RecommendedItem, Sources
from app.recommend.service import Query
from app.store.batch import Command, round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import decode_item_meta, score_pairs
from app.store.keys import Keys

SHOWN_CAP = 300
"""Entries kept in a shopper's shown set (all placements): the oldest go first."""
SHOWN_TTL_SECONDS = 7 * 24 * 3600  # the longest rotation window a placement may have
MAX_POOL = 120
RELOAD_SECONDS = 60.0
"""Placements are re-read at least this often even if the epoch stands still: a write whose epoch
announcement Redis missed (down at the time, back with its old data) is served within a minute."""


@dataclass(frozen=True)
class PlacedQuery(Query):
    """The request's filters with the placement's attribute conditions (an id check is `exclude_items`)."""

    attributes: Mapping[str, frozenset[tuple[str, Any]]] | None = None
    """`rules.accepted` of the placement's attribute filter: checked per candidate, so set lookups."""

    def admits(self, meta: dict[str, Any] | None) -> bool:
        return super().admits(meta) and (self.attributes is None or rules.attributes_in(self.attributes, meta))


@dataclass(frozen=True)
class Placed:
    name: str
    spec: PlacementIn
    user_id: str | None
    shown: dict[str, float] = field(default_factory=dict)
    """Item -> when this shopper was last shown it here, within the rotation window."""

    def reorders(self) -> bool:
        s = self.spec
        return bool(s.boosts or s.pins or s.diversity or s.rotation or s.filters.exclude_items)


FILTER_FIELDS = ("category", "available_only", "exclude_seen", "min_price", "max_price")


def placed_query(placed: Placed, request: Query, explicit: set[str]) -> tuple[PlacedQuery, int]:
    """The query to score with (a pool deeper than `n` when rules reorder) and the `n` to show.

    Filters and `n` the request states explicitly win over the placement's defaults."""
    f = placed.spec.filters
    values = {name: getattr(request if name in explicit else f, name) for name in FILTER_FIELDS}
    n = request.n if "n" in explicit else placed.spec.n
    pool = min(MAX_POOL, 3 * n + 20 + len(f.exclude_items)) if placed.reorders() else n
    attributes = rules.accepted(f.attributes) if f.attributes else None
    return PlacedQuery(n=pool, alpha=request.alpha, attributes=attributes, **values), n


class PlacementBook:
    """Every placement's rules in this process, reloaded from Postgres when the epoch moves."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], redis: aioredis.Redis, keys: Keys) -> None:
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.keys = keys
        self._epoch: bytes | None = None
        self._specs: dict[str, PlacementIn] | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def resolve(self, name: str, kinds: tuple[Kind, ...], user_id: str | None) -> Placed:
        cached = (self._specs or {}).get(name)
        window = _window(cached)
        commands: list[Command] = [("GET", self.keys.placements_epoch())]
        if user_id is not None and (cached is None or cached.rotation is not None):
            commands.append(self._shown_read(user_id, window))
        replies = await round_trip(self.redis, commands, TIMEOUT_SECONDS)
        if self._specs is None or replies[0] != self._epoch or time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            await self._reload(replies[0])
        spec = (self._specs or {}).get(name)
        if spec is None:
            raise PlacementNotFound(f"No placement `{name}`.")
        if spec.kind not in kinds:
            raise ValidationFailed(f"Placement `{name}` is of kind `{spec.kind}`; this route serves "
                                   f"{' or '.join(kinds)} placements.")
        if user_id is None or spec.rotation is None:
            return Placed(name, spec, user_id)
        if len(replies) < 2 or _window(spec) > window:  # rules changed under us: read the new window
            (raw,) = await round_trip(self.redis, [self._shown_read(user_id, _window(spec))], TIMEOUT_SECONDS)
        else:
            raw = replies[1]
        cutoff = time.time() - 60.0 * _window(spec)
        prefix = f"{name}|".encode()
        shown = {m[len(prefix):].decode(): s for m, s in score_pairs(raw) if m.startswith(prefix) and s >= cutoff}
        return Placed(name, spec, user_id, shown)

    def _shown_read(self, user_id: str, window_minutes: int) -> Command:
        since = time.time() - 60.0 * window_minutes
        return ("ZRANGEBYSCORE", self.keys.shown(user_id), repr(since), "+inf", "WITHSCORES")

    async def _reload(self, epoch: bytes | None) -> None:
        async with self._lock:
            if self._specs is not None and epoch == self._epoch \
                    and time.monotonic() - self._loaded_at <= RELOAD_SECONDS:
                return
            # the epoch was read before the rows: a write committed meanwhile moves it again
            async with self.sessionmaker() as session:
                self._specs = await load_all(session)
            self._epoch, self._loaded_at = epoch, time.monotonic()


def _window(spec: PlacementIn | None) -> int:
    if spec is None or spec.rotation is None:
        return SHOWN_TTL_SECONDS // 60
    return spec.rotation.window_minutes


async def arrange(
    redis: aioredis.Redis, keys: Keys, models: ModelCache, metas: MetaCache, placed: Placed,
    recs: Recommendations, q: Query, n: int, exclusions_key: str | None = None,
    excluded: frozenset[str] | set[str] = frozenset(),
) -> Recommendations:
    """`recs` (a pool scored and filtered for `q`) under the placement's rules, `n` items; records what
    was shown when the placement rotates. Pins are checked against `excluded` (the basket, the item
    itself) and the set at `exclusions_key` (the shopper's purchases, or everything seen)."""
    spec = placed.spec
    if not placed.reorders():
        return recs.model_copy(update={"placement": placed.name, "items": recs.items[:n]})
    pins = [(p.item_id, p.position) for p in spec.pins if p.position <= n]
    known = metas.current()
    wanted = [i.item_id for i in recs.items if i.item_id not in known] + [p for p, _ in pins if p not in known]
    commands: list[Command] = []
    if wanted:
        commands.append(("HMGET", keys.item_meta(), *wanted))
    if pins and exclusions_key:
        commands.append(("SMISMEMBER", exclusions_key, *[p for p, _ in pins]))
    replies = await round_trip(redis, commands, TIMEOUT_SECONDS) if commands else []
    meta: dict[str, Any] = dict(zip(wanted, map(decode_item_meta, replies[0]), strict=True)) if wanted else {}
    excluded_pins = {p for (p, _), hit in zip(pins, replies[-1], strict=True) if hit} \
        if pins and exclusions_key else set()

    def meta_of(item_id: str) -> dict[str, Any] | None:
        return known.get(item_id) or meta.get(item_id)

    pinned = {p for p, _ in pins}
    drop = set(spec.filters.exclude_items) | pinned
    pool = [i for i in recs.items if i.item_id not in drop and q.admits(meta_of(i.item_id))]
    pool_meta = [meta_of(i.item_id) or {} for i in pool]
    ids = [i.item_id for i in pool]
    scores = rules.adjusted_scores(ids, [i.score for i in pool], pool_meta, spec, placed.shown, time.time())
    sim = None
    if spec.diversity and spec.diversity.lambda_ is not None and recs.model_version:
        sim = await _similarity(models, recs.model_version, ids)
    eligible = [(p, pos) for p, pos in pins
                if p not in excluded_pins and p not in excluded and q.admits(meta_of(p))]
    order = rules.select(scores, [rules.primary_category(m) for m in pool_meta], spec.diversity,
                         n - len(eligible), sim)
    by_id = {i.item_id: i for i in recs.items}
    rank = {item_id: k for k, item_id in enumerate(ids)}
    items: list[RecommendedItem] = []
    for item_id in rules.place_pins([ids[k] for k in order], eligible):
        if item_id in pinned:
            items.append(by_id.get(item_id) or _featured(item_id, meta_of(item_id)))
        else:
            items.append(by_id[item_id].model_copy(update={"score": round(float(scores[rank[item_id]]), 6)}))
    if spec.rotation is not None and placed.user_id is not None and items:
        await _record_shown(redis, keys.shown(placed.user_id), placed.name, [i.item_id for i in items])
    return recs.model_copy(update={"placement": placed.name, "items": items})


def _featured(item_id: str, meta: dict[str, Any] | None) -> RecommendedItem:
    return RecommendedItem(item_id=item_id, score=0.0, sources=Sources(cf=0.0, content=0.0, popularity=0.0),
                           reason="featured", title=(meta or {}).get("t"))


async def _similarity(models: ModelCache, version: str, ids: list[str]) -> NDArray[np.float32] | None:
    """float32[P, P] content cosine between the candidates (0 for items newer than the model)."""
    arrays = await models.get(version)
    content = await models.content(arrays)
    if content is None:
        return None
    pos = np.array([arrays.item_pos.get(i, -1) for i in ids], dtype=np.int64)
    inside = pos >= 0
    x = content.matrix[pos[inside]]
    # Renumber the few features these rows use: x.T over the whole vocabulary made scipy convert a
    # catalogue-wide index on every request (~1 ms of the placement path, profiled).
    used, compact = np.unique(x.indices, return_inverse=True)
    small = sp.csr_matrix((x.data, compact.astype(np.int32), x.indptr), shape=(x.shape[0], len(used)))
    sim = np.zeros((len(ids), len(ids)), dtype=np.float32)
    sim[np.ix_(inside, inside)] = (small @ small.T).toarray()
    return sim


async def _record_shown(redis: aioredis.Redis, key: str, name: str, shown: list[str]) -> None:
    """One pipelined write: the shown items stamped now, the set capped (oldest out) and its TTL renewed."""
    now = repr(time.time())
    members: list[str] = []
    for item_id in shown:
        members += [now, f"{name}|{item_id}"]
    await round_trip(redis, [
        ("ZADD", key, *members), ("ZREMRANGEBYRANK", key, 0, -SHOWN_CAP - 1), ("EXPIRE", key, SHOWN_TTL_SECONDS),
    ], TIMEOUT_SECONDS)
