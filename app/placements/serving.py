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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import scipy.sparse as sp
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import PlacementNotFound, ValidationFailed
from app.experiments import exposures
from app.experiments.service import Live, load_live
from app.placements import rules
from app.placements.memo import MetaMemo
from app.placements.schemas import Kind, PlacementIn
from app.placements.service import load_all
from app.recommend.algo_blend import POPULARITY_ONLY
from app.recommend.meta_cache import MetaCache
from app.recommend.model_cache import ModelCache
from app.recommend.schemas import ExperimentTag, Recommendations, RecommendedItem, Sources
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
    memo: MetaMemo[bool] | None = field(default=None, compare=False, repr=False)
    """The verdicts of these very filters, kept by the placement across requests (`memo`)."""

    def admits(self, meta: dict[str, Any] | None) -> bool:
        if meta is None or self.memo is None:
            return self._admits(meta)
        return self.memo.get(meta, self._admits)

    def _admits(self, meta: dict[str, Any] | None) -> bool:
        return super().admits(meta) and (self.attributes is None or rules.attributes_in(self.attributes, meta))


@dataclass(frozen=True)
class Placed:
    name: str
    spec: PlacementIn
    user_id: str | None
    shown: dict[str, float] = field(default_factory=dict)
    """Item -> when this shopper was last shown it here, within the rotation window."""
    memos: Memos | None = None
    """This placement's per-item results, kept across requests until its rules are reloaded."""
    pins: PinState | None = None
    """The pins' metadata and exclusions, read with the placement (None: `arrange` reads them)."""
    experiment: Assigned | None = None
    """The shopper's variant when an experiment runs here (`spec` is then the variant's rules)."""

    def reorders(self) -> bool:
        s = self.spec
        return bool(s.boosts or s.pins or s.diversity or s.rotation or s.filters.exclude_items)


@dataclass(frozen=True)
class Assigned:
    """A shopper's arm of the experiment running on the placement, and the token of this exposure."""

    id: int
    index: int
    variant: str
    token: str
    alpha: float | None
    strategy: str | None

    def tag(self, recs: Recommendations) -> dict[str, Any]:
        """The response's experiment and a recommendation_id that carries it: `<strategy>.<token>.e<id>v<k>`
        (events parse the strategy before the first dot, as ever; results read the third part)."""
        strategy = recs.recommendation_id.split(".", 1)[0]
        return {"experiment": ExperimentTag(id=self.id, variant=self.variant),
                "recommendation_id": f"{strategy}.{self.token}.e{self.id}v{self.index}"}


STRATEGY_ALPHA = {"cf": 1.0, "content": 0.0}

FILTER_FIELDS = ("category", "available_only", "exclude_seen", "min_price", "max_price")


def placed_query(placed: Placed, request: Query, explicit: set[str]) -> tuple[PlacedQuery, int]:
    """The query to score with (a pool deeper than `n` when rules reorder) and the `n` to show.

    Filters and `n` the request states explicitly win over the placement's defaults."""
    f = placed.spec.filters
    values = {name: getattr(request if name in explicit else f, name) for name in FILTER_FIELDS}
    n = request.n if "n" in explicit else placed.spec.n
    pool = min(MAX_POOL, 3 * n + 20 + len(f.exclude_items)) if placed.reorders() else n
    attributes = rules.accepted(f.attributes) if f.attributes else None
    memo = placed.memos.filters(tuple(values.values())) if placed.memos is not None else None
    alpha, pop_weight = request.alpha, None
    if (arm := placed.experiment) is not None:
        alpha = STRATEGY_ALPHA.get(arm.strategy or "", arm.alpha if arm.alpha is not None else alpha)
        pop_weight = POPULARITY_ONLY if arm.strategy == "popularity" else None
    return PlacedQuery(n=pool, alpha=alpha, pop_weight=pop_weight, attributes=attributes, memo=memo,
                       **values), n


class Memos:
    """One placement's memoised per-item results: its filters' verdict (per combination of request
    filters, which a request may override) and its boost factor."""

    MAX_FILTER_SETS = 64

    def __init__(self) -> None:
        self.boosts: MetaMemo[float] = MetaMemo()
        self._filters: dict[tuple[Any, ...], MetaMemo[bool]] = {}

    def filters(self, values: tuple[Any, ...]) -> MetaMemo[bool]:
        memo = self._filters.get(values)
        if memo is None:
            if len(self._filters) >= self.MAX_FILTER_SETS:
                self._filters = {}
            memo = self._filters[values] = MetaMemo()
        return memo


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
        self._memos: dict[str, Memos] = {}
        self._live: dict[str, Live] = {}

    def _assign(self, name: str, user_id: str | None) -> tuple[Live, int] | None:
        live = self._live.get(name)
        if live is None or user_id is None or not live.starts_at <= time.time() < live.ends_at:
            return None
        return live, live.arm(user_id)[0]

    async def resolve(self, name: str, kinds: tuple[Kind, ...], user_id: str | None) -> Placed:
        cached = (self._specs or {}).get(name)
        window = _window(cached)
        commands: list[Command] = [("GET", self.keys.placements_epoch())]
        if user_id is not None and (cached is None or cached.rotation is not None):
            commands.append(self._shown_read(user_id, window))
        # The pins' metadata and whether the shopper bought or saw them ride along: `arrange` would
        # otherwise spend a round trip of its own on them at every request.
        pin_ids = [p.item_id for p in cached.pins] if cached is not None else []
        pin_keys = [self.keys.purchased(user_id), self.keys.seen(user_id)] if pin_ids and user_id is not None else []
        # the exposure rides along too (`experiments.exposures`): never a write of its own
        assigned = self._assign(name, user_id)
        token = uuid.uuid4().hex[:16] if self._live else ""
        if assigned is not None and user_id is not None:
            commands.append(self._exposure(assigned, token, user_id))
        if pin_ids:
            commands += [("HMGET", self.keys.item_meta(), *pin_ids)]
            commands += [("SMISMEMBER", key, *pin_ids) for key in pin_keys]
        replies = await round_trip(self.redis, commands, TIMEOUT_SECONDS)
        pin_replies = replies[len(replies) - len(pin_keys) - 1:] if pin_ids else []
        replies = replies[: len(replies) - len(pin_replies) - (assigned is not None)]
        if self._specs is None or replies[0] != self._epoch or time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            await self._reload(replies[0])
            now_assigned = self._assign(name, user_id)
            token = token or uuid.uuid4().hex[:16]
            if now_assigned != assigned and now_assigned is not None and user_id is not None:
                await round_trip(self.redis, [self._exposure(now_assigned, token, user_id)], TIMEOUT_SECONDS)
            assigned = now_assigned
        spec = (self._specs or {}).get(name)
        if spec is None:
            raise PlacementNotFound(f"No placement `{name}`.")
        if spec.kind not in kinds:
            raise ValidationFailed(f"Placement `{name}` is of kind `{spec.kind}`; this route serves "
                                   f"{' or '.join(kinds)} placements.")
        experiment = None
        if assigned is not None:
            live, k = assigned
            arm = live.arms[k]
            # a variant's rules (the same kind) in place of the placement's; memos are per variant
            spec, memo_key = arm.spec, f"{name}\x00{k}"
            experiment = Assigned(live.id, k, arm.name, token, arm.alpha, arm.strategy)
        else:
            memo_key = name
        memos = self._memos.get(memo_key)
        if memos is None:
            memos = self._memos[memo_key] = Memos()
        pins = _pin_state(pin_ids, pin_keys, pin_replies) if spec is cached and pin_ids else None
        if user_id is None or spec.rotation is None:
            return Placed(name, spec, user_id, memos=memos, pins=pins, experiment=experiment)
        if len(replies) < 2 or _window(spec) > window:  # rules changed under us: read the new window
            (raw,) = await round_trip(self.redis, [self._shown_read(user_id, _window(spec))], TIMEOUT_SECONDS)
        else:
            raw = replies[1]
        cutoff = time.time() - 60.0 * _window(spec)
        prefix = f"{name}|".encode()
        shown = {m[len(prefix):].decode(): s for m, s in score_pairs(raw) if m.startswith(prefix) and s >= cutoff}
        return Placed(name, spec, user_id, shown, memos, pins, experiment)

    def _exposure(self, assigned: tuple[Live, int], token: str, user_id: str) -> Command:
        live, k = assigned
        return exposures.push(self.keys, exposures.entry(live.id, live.arms[k].name, token, user_id, time.time()))

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
                self._live = await load_live(session, self._specs)
            self._epoch, self._loaded_at = epoch, time.monotonic()
            self._memos = {}  # results of the rules as they were


@dataclass(frozen=True)
class PinState:
    meta: dict[str, dict[str, Any] | None]
    """Pin -> its metadata (None: not in the catalog)."""
    excluded: dict[str, set[str]]
    """Exclusion set key (the shopper's purchases, everything seen) -> the pins in it."""


def _pin_state(pin_ids: list[str], keys: list[str], replies: list[Any]) -> PinState:
    meta = dict(zip(pin_ids, map(decode_item_meta, replies[0]), strict=True))
    excluded = {key: {p for p, hit in zip(pin_ids, reply, strict=True) if hit}
                for key, reply in zip(keys, replies[1:], strict=True)}
    return PinState(meta, excluded)


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
    tag = placed.experiment.tag(recs) if placed.experiment is not None else {}
    if not placed.reorders():
        return recs.model_copy(update={"placement": placed.name, "items": recs.items[:n], **tag})
    pins = [(p.item_id, p.position) for p in spec.pins if p.position <= n]
    known = metas.current()
    read = placed.pins
    wanted = [i.item_id for i in recs.items if i.item_id not in known]
    meta: dict[str, Any] = dict(read.meta) if read is not None else {}
    wanted += [p for p, _ in pins if p not in known and p not in meta]
    check_pins = bool(pins and exclusions_key) and (read is None or exclusions_key not in read.excluded)
    commands: list[Command] = []
    if wanted:
        commands.append(("HMGET", keys.item_meta(), *wanted))
    if check_pins and exclusions_key:
        commands.append(("SMISMEMBER", exclusions_key, *[p for p, _ in pins]))
    replies = await round_trip(redis, commands, TIMEOUT_SECONDS) if commands else []
    if wanted:
        meta.update(zip(wanted, map(decode_item_meta, replies[0]), strict=True))
    excluded_pins: set[str] = set()
    if check_pins:
        excluded_pins = {p for (p, _), hit in zip(pins, replies[-1], strict=True) if hit}
    elif pins and exclusions_key and read is not None:
        excluded_pins = read.excluded[exclusions_key]

    def meta_of(item_id: str) -> dict[str, Any] | None:
        return known.get(item_id) or meta.get(item_id)

    pinned = {p for p, _ in pins}
    drop = set(spec.filters.exclude_items) | pinned
    pool = [i for i in recs.items if i.item_id not in drop and q.admits(meta_of(i.item_id))]
    pool_meta = [meta_of(i.item_id) or {} for i in pool]
    ids = [i.item_id for i in pool]
    factors = None
    if spec.boosts and placed.memos is not None:
        boosts, factor = placed.memos.boosts, partial(rules.boost_factor, spec)
        factors = [boosts.get(m, factor) if m else factor(m) for m in pool_meta]
    scores = rules.adjusted_scores(ids, [i.score for i in pool], pool_meta, spec, placed.shown, time.time(),
                                   factors)
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
    return recs.model_copy(update={"placement": placed.name, "items": items, **tag})


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
    return content_cosine(content.matrix, pos)


def content_cosine(matrix: sp.csr_matrix, pos: NDArray[np.int64]) -> NDArray[np.float32]:
    """float32[P, P]: the dot products of the rows `pos` of the (row-normalised) content matrix; 0 for
    a position of -1 (an item newer than the model).

    The rows are gathered with numpy; off the diagonal only the features two candidates share count,
    a few dozen of the thousand or so they use, so the product runs on a small dense block. scipy's
    row indexing and sparse product cost ~0.2 ms a request here (profiled), this a fraction of it."""
    inside = np.flatnonzero(pos >= 0)
    starts, stops = matrix.indptr[pos[inside]], matrix.indptr[pos[inside] + 1]
    lengths = (stops - starts).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    flat = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
    rows = np.repeat(np.arange(len(inside)), lengths)
    values = matrix.data[flat].astype(np.float32)
    features = matrix.indices[flat]
    ordered = np.sort(features)  # np.unique(return_inverse=...) took 15x as long here
    used = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])  # features of two candidates or more
    column = np.minimum(np.searchsorted(used, features), max(len(used) - 1, 0))
    shared = used[column] == features if len(used) else np.zeros(len(features), dtype=bool)
    block = np.zeros((len(inside), len(used)), dtype=np.float32)
    block[rows[shared], column[shared]] = values[shared]
    inner = block @ block.T
    inner[np.diag_indices_from(inner)] = np.bincount(rows, weights=values * values, minlength=len(inside))
    sim = np.zeros((len(pos), len(pos)), dtype=np.float32)
    sim[np.ix_(inside, inside)] = inner
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
