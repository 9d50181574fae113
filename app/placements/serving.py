"""Placements on the serving path: resolve a name (cached per epoch), then arrange the scored list.

A shopper's request with `?placement=` costs, beyond the plain request: the placement's reads (its
epoch, the shopper's recently shown items when it rotates, the pins' metadata and exclusions) and an
experiment's exposure, sent in the recommender's first round trip (`PlacementBook.plan`, planned from
the cached rules); a deeper candidate pool, screened by the placement's filters in one numpy lookup
(`memo.Verdicts`) and kept as tuples (`service.Chosen`): only the `n` items shown are dressed as
response items; the rules (`rules`); and one pipelined write of what was shown. The session and item
routes read the placement in a round trip of its own. Requests without a placement never reach this
module.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import PlacementNotFound, ValidationFailed
from app.experiments import exposures
from app.experiments.service import Live, load_live
from app.placements import rules
from app.placements.memo import ByPosition, Verdicts
from app.placements.schemas import Kind, PlacementIn
from app.placements.service import load_all
from app.recommend.algo_blend import POPULARITY_ONLY
from app.recommend.meta_cache import Meta
from app.recommend.model_cache import VersionArrays
from app.recommend.schemas import ExperimentTag
from app.recommend.service import Query
from app.store import live_reads
from app.store.batch import Command, round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import decode_item_meta
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
    memo: Verdicts | None = field(default=None, compare=False, repr=False)
    """The verdicts of these very filters, kept by the placement across requests (`memo`)."""

    def admits(self, meta: dict[str, Any] | None) -> bool:
        if meta is None or self.memo is None:
            return self._admits(meta)
        return self.memo.by_meta.get(meta, self._admits)

    @property
    def screens(self) -> bool:
        return self.memo is not None

    def screen(
        self, arrays: VersionArrays, positions: NDArray[np.int32], known: Mapping[str, Meta]
    ) -> NDArray[np.bool_] | None:
        if self.memo is None:
            return None
        return self.memo.screen(arrays.item_ids, arrays, known, positions, self._admits)

    def _admits(self, meta: dict[str, Any] | None) -> bool:
        return super().admits(meta) and (self.attributes is None or rules.attributes_in(self.attributes, meta))


@dataclass(frozen=True)
class Placed:
    name: str
    spec: PlacementIn
    user_id: str | None
    shown: Mapping[str, float] = field(default_factory=dict)
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

    def tag(self, strategy: str) -> dict[str, Any]:
        """The response's experiment and a recommendation_id that carries it: `<strategy>.<token>.e<id>v<k>`
        (events parse the strategy before the first dot, as ever; results read the third part)."""
        return {"experiment": ExperimentTag(id=self.id, variant=self.variant),
                "recommendation_id": f"{strategy}.{self.token}.e{self.id}v{self.index}"}


@dataclass(frozen=True)
class Plan:
    """`PlacementBook.plan`: what a request on a placement reads, decided from the cached rules."""

    name: str
    kinds: tuple[Kind, ...]
    user_id: str | None
    cached: PlacementIn | None
    window: int
    commands: list[Command]
    pin_ids: list[str]
    pin_keys: list[str]
    assigned: tuple[Live, int] | None
    token: str

    def likely(self) -> Placed | None:
        """The placement as the cached rules have it (the variant's, in an experiment), to plan the
        recommender's reads before the replies confirm the rules; None when nothing is cached."""
        if self.cached is None:
            return None
        spec = self.cached if self.assigned is None else self.assigned[0].arms[self.assigned[1]].spec
        return Placed(self.name, spec, self.user_id)


STRATEGY_ALPHA = {"cf": 1.0, "content": 0.0}

FILTER_FIELDS = ("category", "available_only", "exclude_seen", "min_price", "max_price")


def placed_query(placed: Placed, request: Query, explicit: set[str]) -> tuple[PlacedQuery, int]:
    """The query to score with (a pool deeper than `n` when rules reorder) and the `n` to show.

    Filters and `n` the request states explicitly win over the placement's defaults."""
    f = placed.spec.filters
    values = {name: getattr(request if name in explicit else f, name) for name in FILTER_FIELDS}
    n = request.n if "n" in explicit else placed.spec.n
    pool = min(MAX_POOL, 3 * n + 20 + len(f.exclude_items)) if placed.reorders() else n
    attributes = None
    if f.attributes:
        memos = placed.memos
        if memos is None:
            attributes = rules.accepted(f.attributes)
        else:
            attributes = memos.attributes = memos.attributes or rules.accepted(f.attributes)
    memo = placed.memos.filters(tuple(values.values())) if placed.memos is not None else None
    alpha, pop_weight = request.alpha, None
    if (arm := placed.experiment) is not None:
        alpha = STRATEGY_ALPHA.get(arm.strategy or "", arm.alpha if arm.alpha is not None else alpha)
        pop_weight = POPULARITY_ONLY if arm.strategy == "popularity" else None
    return PlacedQuery(n=pool, alpha=alpha, pop_weight=pop_weight, attributes=attributes, memo=memo,
                       **values), n


class Memos:
    """One placement's memoised per-item results: its filters' verdict (per combination of request
    filters, which a request may override), its boost factor and the primary category."""

    MAX_FILTER_SETS = 64

    def __init__(self) -> None:
        self.boosts = ByPosition()
        """Boost factor by model position."""
        self.categories = ByPosition()
        """Code of the primary category (`category_code`) by model position."""
        self._codes: dict[str | None, int] = {None: -1}
        self._filters: dict[tuple[Any, ...], Verdicts] = {}
        self.attributes: dict[str, frozenset[tuple[str, Any]]] | None = None
        """`rules.accepted` of the placement's attribute filter, made once."""

    def category_code(self, meta: Mapping[str, Any]) -> float:
        """A small integer per primary category (-1: none), for the tables' float64 entries."""
        category = rules.primary_category(meta)
        code = self._codes.get(category)
        if code is None:
            code = self._codes[category] = len(self._codes) - 1
        return float(code)

    def filters(self, values: tuple[Any, ...]) -> Verdicts:
        memo = self._filters.get(values)
        if memo is None:
            if len(self._filters) >= self.MAX_FILTER_SETS:
                self._filters = {}
            memo = self._filters[values] = Verdicts()
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
        plan = self.plan(name, kinds, user_id)
        return await self.settle(plan, await round_trip(self.redis, plan.commands, TIMEOUT_SECONDS))

    def plan(self, name: str, kinds: tuple[Kind, ...], user_id: str | None) -> Plan:
        """The reads (and the exposure write) a request on placement `name` makes, from the rules cached
        here; `settle` turns their replies into the request's `Placed`. A caller may send them in a
        round trip of its own (the shopper's route does, with the recommender's first stage)."""
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
            commands += live_reads.meta_reads(self.keys, pin_ids)
            commands += [("SMISMEMBER", key, *pin_ids) for key in pin_keys]
        return Plan(name, kinds, user_id, cached, window, commands, pin_ids, pin_keys, assigned, token)

    async def settle(self, plan: Plan, replies: list[Any]) -> Placed:
        """The request's placement from the replies to `plan.commands`: the rules reloaded first when
        the epoch moved (or they are older than RELOAD_SECONDS)."""
        name, user_id, cached, window, assigned, token = (
            plan.name, plan.user_id, plan.cached, plan.window, plan.assigned, plan.token)
        pin_ids, pin_keys = plan.pin_ids, plan.pin_keys
        n_meta = len(live_reads.meta_reads(self.keys, pin_ids))
        pin_replies = replies[len(replies) - len(pin_keys) - n_meta:] if pin_ids else []
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
        if spec.kind not in plan.kinds:
            raise ValidationFailed(f"Placement `{name}` is of kind `{spec.kind}`; this route serves "
                                   f"{' or '.join(plan.kinds)} placements.")
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
        pins = None
        if spec is cached and pin_ids:
            metas = live_reads.meta_replies(self.keys, pin_ids, pin_replies[:n_meta])
            pins = _pin_state(pin_ids, pin_keys, [metas, *pin_replies[n_meta:]])
        if user_id is None or spec.rotation is None:
            return Placed(name, spec, user_id, memos=memos, pins=pins, experiment=experiment)
        if len(replies) < 2 or _window(spec) > window:  # rules changed under us: read the new window
            (raw,) = await round_trip(self.redis, [self._shown_read(user_id, _window(spec))], TIMEOUT_SECONDS)
        else:
            raw = replies[1]
        shown = Shown(raw, name, time.time() - 60.0 * _window(spec))
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


class Shown(Mapping[str, float]):
    """Item -> when the shopper was last shown it in this placement, within the window.

    The read returns up to SHOWN_CAP entries of all the shopper's placements; decoding them all cost
    more than the rest of the rotation (profiled), so the raw reply is kept and looked up for the
    pool's items only."""

    def __init__(self, raw: list[Any], name: str, cutoff: float) -> None:
        if raw and not isinstance(raw[0], list):  # RESP2: member, score, member, score...
            pairs = iter(raw)
            self._raw: dict[bytes, Any] = dict(zip(pairs, pairs, strict=True))
        else:  # RESP3: [[member, score], ...]
            self._raw = {member: score for member, score in raw}
        self._prefix = f"{name}|"
        self._cutoff = cutoff

    def get(self, item_id: str, default: Any = None) -> Any:
        raw = self._raw.get((self._prefix + item_id).encode())
        if raw is None or (ts := float(raw)) < self._cutoff:
            return default
        return ts

    def __getitem__(self, item_id: str) -> float:
        ts: float | None = self.get(item_id)
        if ts is None:
            raise KeyError(item_id)
        return ts

    def _decoded(self) -> dict[str, float]:
        prefix = self._prefix.encode()
        return {m[len(prefix):].decode(): ts for m, raw in self._raw.items()
                if m.startswith(prefix) and (ts := float(raw)) >= self._cutoff}

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __bool__(self) -> bool:
        return bool(self._raw)  # a shortcut only: entries of other placements make it true too


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
