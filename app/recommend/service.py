"""Hybrid recommendations served from Redis, one pipelined round trip per stage.

Stage 1 reads the model pointer, the shopper's live history and exclusions, the live popularity
list and the catalog's metadata epoch; stage 2 the neighbour rows of the history items — only those
not yet in the version's in-process row cache, so usually no I/O — and the live content rows of
history items newer than the model (only when there are some); stage 3 the metadata of the best
candidates (filters, titles for reasons) that this process has not read since the catalog last
changed (`meta_cache`), so a deleted item still disappears at once. Scoring is
`algo_blend.score_user`, the very function validation measured.

Each round trip is one `store.batch.round_trip`, bounded by its own timeout (the client has no
per-command timeout, see `store.client`); a timeout is an OSError, which the routes answer from
Postgres like any Redis outage.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray

from app.eventlog import TYPE_CODE
from app.recommend import reasons
from app.recommend.algo_blend import UserScores, score_user
from app.recommend.algo_matrix import history_weights
from app.recommend.meta_cache import Meta, MetaCache
from app.recommend.model_cache import ModelCache, VersionArrays
from app.recommend.schemas import Recommendations
from app.store import live_reads
from app.store.batch import Command, round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import decode_history, decode_item_meta, score_pairs, text
from app.store.keys import Keys

LIVE_CONTENT_LIMIT = 25  # history items newer than the model whose live content rows are read
POPULAR_FILL = 100


@dataclass(frozen=True)
class Query:
    n: int = 10
    category: str | None = None
    available_only: bool = True
    exclude_seen: bool = False
    alpha: float | None = None
    min_price: float | None = None
    max_price: float | None = None
    pop_weight: float | None = None
    """Replaces the shop's popularity weight (an experiment's `popularity` variant sets it high)."""

    def admits(self, meta: dict[str, Any] | None) -> bool:
        if meta is None:  # deleted or unknown
            return False
        if self.available_only and not meta.get("a", True):
            return False
        if self.category is not None and self.category not in (meta.get("c") or []):
            return False
        price = meta.get("p")
        if self.min_price is not None and (price is None or price < self.min_price):
            return False
        return not (self.max_price is not None and (price is None or price > self.max_price))

    @property
    def screens(self) -> bool:
        """Whether `screen` can refuse anything (it costs a lookup per candidate to ask)."""
        return False

    def screen(
        self, arrays: VersionArrays, positions: NDArray[np.int32], known: Mapping[str, Meta]
    ) -> NDArray[np.bool_] | None:
        """bool[len(positions)]: False where the model's item at that position is certainly refused,
        judged on `known` metadata without I/O (True also where the metadata is not at hand, or the
        position is -1, an item the model lacks: `admits` decides on those once read). None: no
        screen, `admits` judges every candidate."""
        return None


class HistoryEntry(NamedTuple):
    """One live history event (a tuple: 25 of them are built per request)."""

    ts: float
    type: str
    value: float | None
    item_id: str


Ranked = tuple[str, float, float, float, float, str | None]
"""A scored candidate: item id, total, cf, content, popularity, the history item behind it (or None)."""


class Chosen(NamedTuple):
    """A query's candidates picked in rank order, not yet dressed as response items: a placement
    re-ranks a pool of them and dresses only the few it shows (reasons and models for the whole pool
    were most of what a placement request cost beyond a plain one, profiled)."""

    version: str | None
    strategy: str
    picked: list[Ranked]
    """Popularity fill last, as (item id, 0.01 x popularity, 0, 0, popularity, None)."""
    meta: dict[str, dict[str, Any] | None]
    """The metadata of the picked items and of the history items their reasons name (None: unknown)."""
    last_type: dict[str, str]
    """History item -> the type of the shopper's latest event on it (the verb of a reason)."""
    category: str | None

    def item(self, r: Ranked, score: float | None = None) -> dict[str, Any]:
        """`r` as a response item (a dict: the response validates all at once); `score` replaces its total."""
        item_id, total, cf, ct, pop, why = r
        meta = self.meta.get(item_id)
        reason = (reasons.because(cf, ct, why, self.meta.get(why), self.last_type.get(why, "view")) if why
                  else reasons.popular(meta, self.category))
        return {
            "item_id": item_id, "score": round(total if score is None else score, 6),
            "sources": {"cf": round(cf, 6), "content": round(ct, 6), "popularity": round(pop, 6)},
            "reason": reason, "title": (meta or {}).get("t"),
        }

    def dressed(self) -> Recommendations:
        """Every picked candidate as an item: the plain routes' answer."""
        return self.response([self.item(r) for r in self.picked])

    def response(self, items: list[Any], **extra: Any) -> Recommendations:
        """The answer with `items` (`item` dicts, or RecommendedItem models such as a placement's pins)."""
        return Recommendations.model_validate({
            "recommendation_id": f"{self.strategy}.{uuid.uuid4().hex[:16]}", "model_version": self.version,
            "strategy": self.strategy, "items": items, **extra,
        })


def _ranked(ids: NDArray[np.object_], scores: UserScores, start: int, stop: int) -> list[Ranked]:
    """Candidates start..stop of `scores` as tuples with string ids."""
    part = slice(start, stop)
    return [
        (ids[item], total, cf, ct, pop, ids[why] if why >= 0 else None)
        for item, total, cf, ct, pop, why in zip(
            scores.items[part].tolist(), scores.total[part].tolist(), scores.cf[part].tolist(),
            scores.content[part].tolist(), scores.popularity[part].tolist(), scores.reason[part].tolist(),
            strict=True)
    ]


def _fill(popular: list[Any]) -> list[tuple[str, float]]:
    """The live popularity reply as (item id, popularity relative to the first)."""
    pairs = score_pairs(popular)
    top = pairs[0][1] if pairs and pairs[0][1] > 0 else 1.0
    return [(member.decode(), score / top) for member, score in pairs]


class RecommendService:
    def __init__(self, redis: aioredis.Redis, keys: Keys, cache: ModelCache) -> None:
        self.redis = redis
        self.keys = keys
        self.cache = cache
        self.meta = MetaCache()

    async def _run(self, *commands: Command) -> list[Any]:
        return await round_trip(self.redis, commands, TIMEOUT_SECONDS)

    async def for_user(self, user_id: str, q: Query) -> Recommendations:
        return (await self.choose_for_user(q, await self._run(*self.user_reads(user_id, q)))).dressed()

    def user_reads(self, user_id: str, q: Query) -> list[Command]:
        """Stage 1 of a shopper's request, for `choose_for_user` (a placement adds its own reads to the
        same round trip)."""
        return [
            ("GET", self.keys.model_pointer()),
            ("GET", self.keys.item_meta_epoch()),
            # as much of the history as the model validated on (`HybridConfig.history_limit`)
            ("LRANGE", self.keys.history(user_id), 0, self.cache.history_limit - 1),
            ("SMEMBERS", self.keys.seen(user_id) if q.exclude_seen else self.keys.purchased(user_id)),
            *self._popular(q),
        ]

    async def choose_for_user(self, q: Query, replies: Sequence[Any]) -> Chosen:
        """The candidates for `q` from the replies of `user_reads` (for the same `q`)."""
        version, epoch, raw_history, excluded, *popular = replies
        history = [HistoryEntry._make(decode_history(e)) for e in raw_history]
        exclude = {b.decode() for b in excluded}
        return await self.choose(version.decode() if version else None, history, exclude, q,
                                 self._merged(q, popular), epoch)

    async def for_session(self, item_ids: list[str], q: Query) -> Recommendations:
        return (await self.choose_for_session(item_ids, q)).dressed()

    async def choose_for_session(self, item_ids: list[str], q: Query) -> Chosen:
        version, epoch, *popular = await self._run(
            ("GET", self.keys.model_pointer()), ("GET", self.keys.item_meta_epoch()), *self._popular(q)
        )
        now = time.time()
        # a basket listed newest first: earlier entries count as more recent
        history = [HistoryEntry(now - k, "view", None, item_id) for k, item_id in enumerate(item_ids)]
        return await self.choose(text(version) if version else None, history, set(item_ids), q,
                                 self._merged(q, popular), epoch)

    def _popular(self, q: Query) -> list[Command]:
        """The reads of the live popularity list the filler draws from (one, or one per live bucket and
        their T0s: `store.live_reads`); `_merged` turns their replies into one (`score_pairs`)."""
        return live_reads.reads(self.keys, q.category, min(POPULAR_FILL, 3 * q.n + 20))

    def _merged(self, q: Query, replies: list[Any]) -> list[Any]:
        return live_reads.merged(self.keys, replies, min(POPULAR_FILL, 3 * q.n + 20))

    async def choose(
        self, version: str | None, history: list[HistoryEntry], exclude: set[str], q: Query,
        popular: list[Any] | None = None, epoch: bytes | None = None,
    ) -> Chosen:
        """Candidates from an already read history, up to `q.n` in rank order, before they are dressed
        as items; `popular` is the raw reply of the live popularity read (`_popular`) and `epoch` of the
        metadata epoch, both read here when the caller has not."""
        arrays = await self.cache.get(version) if version else None
        if arrays is not None:
            history = history[: arrays.config.hybrid.history_limit]
        hist_idx = np.zeros(0, dtype=np.int32)
        weights = np.zeros(0, dtype=np.float32)
        if arrays is not None and history:
            hist_idx, weights = self._weigh(arrays, history)
        live_ids = [h.item_id for h in history if arrays is None or h.item_id not in arrays.item_pos]
        live_rows: list[bytes | None] = []
        if popular is None or live_ids:
            commands: list[Command] = []
            if popular is None:
                commands += [("GET", self.keys.item_meta_epoch()), *self._popular(q)]
            if live_ids:
                commands.append(("HMGET", self.keys.live_content(), *live_ids[:LIVE_CONTENT_LIMIT]))
            results = await self._run(*commands)
            if popular is None:
                epoch = results[0]
                popular = self._merged(q, results[1 : len(commands) - (1 if live_ids else 0)])
            if live_ids:
                live_rows = results[-1]

        ranked: list[Ranked] = []
        scores: UserScores | None = None
        head_size = 2 * q.n + 10
        if arrays is not None and len(hist_idx):
            rows = await self.cache.neighbour_rows(arrays, hist_idx.tolist())
            hybrid = arrays.config.hybrid if q.alpha is None else replace(arrays.config.hybrid, alpha=q.alpha)
            if q.pop_weight is not None:
                hybrid = replace(hybrid, pop_weight=q.pop_weight)
            exclude_idx = np.array([arrays.item_pos[i] for i in exclude if i in arrays.item_pos], dtype=np.int32)
            scores = score_user(
                hist_idx, weights, *rows["cf"], *rows["content"], arrays.evidence, arrays.popularity, hybrid,
                exclude=exclude_idx, n=max(4 * q.n, q.n + 50), popular=arrays.popular,
            )
            screened = q.screen(arrays, scores.items, self.meta.known(epoch))
            if screened is not None:
                scores = UserScores(*(getattr(scores, f.name)[screened] for f in fields(scores)))
            ranked = _ranked(arrays.item_ids, scores, 0, head_size)  # the rest only if filters reject many
        if live_ids and arrays is not None:
            if scores is not None:
                ranked += _ranked(arrays.item_ids, scores, head_size, len(scores.items))
                scores = None
            ranked += self._live_content(arrays, live_rows, live_ids, exclude)
            ranked.sort(key=lambda r: -r[1])

        fill = self._screened_fill(q, arrays, popular, epoch) if len(ranked) < q.n else []  # else only if needed
        last_type: dict[str, str] = {}
        for h in reversed(history):
            last_type[h.item_id] = h.type
        known = self.meta.known(epoch)
        meta: dict[str, dict[str, Any] | None] = {}

        async def fetch_meta(ids: list[str]) -> None:
            missing = []
            for item_id in ids:
                if item_id not in meta:
                    found = known.get(item_id)
                    meta[item_id] = found
                    if found is None:
                        missing.append(item_id)
            if missing:
                raw = live_reads.meta_replies(
                    self.keys, missing, await self._run(*live_reads.meta_reads(self.keys, missing)))
                fetched = [(item_id, decode_item_meta(r)) for item_id, r in zip(missing, raw, strict=True)]
                meta.update(fetched)
                self.meta.keep(epoch, fetched)

        # Metadata of the likely winners (and the history items their reasons name) in one round trip;
        # a second one only when filters rejected so many that the list must go deeper.
        head = ranked[:head_size]
        await fetch_meta([r[0] for r in head] + [r[5] for r in head if r[5]]
                         + ([f[0] for f in fill[:head_size]] if len(head) < q.n else []))
        picked: list[Ranked] = []
        chosen: set[str] = set()

        def pick_ranked() -> None:
            for r in ranked:
                if len(picked) >= q.n:
                    return
                item_id = r[0]
                if item_id in chosen or item_id not in meta or not q.admits(meta[item_id]):
                    continue
                picked.append(r)
                chosen.add(item_id)

        pick_ranked()
        if len(picked) < q.n:
            if scores is not None and arrays is not None:
                ranked += _ranked(arrays.item_ids, scores, head_size, len(scores.items))
            fill = fill or self._screened_fill(q, arrays, popular, epoch)
            await fetch_meta([r[0] for r in ranked] + [r[5] for r in ranked if r[5]]
                             + [f[0] for f in fill])
            pick_ranked()
        personal = len(picked)
        for item_id, pop in fill:
            if len(picked) >= q.n:
                break
            if item_id in chosen or item_id in exclude or not q.admits(meta.get(item_id)):
                continue
            picked.append((item_id, 0.01 * pop, 0.0, 0.0, pop, None))
            chosen.add(item_id)

        if version is None:
            strategy = "popularity_no_model"
        elif not history:
            strategy = "popularity_cold_start"
        elif personal == 0:
            strategy = "popularity_fallback"
        else:
            strategy = "hybrid"
        return Chosen(version, strategy, picked, meta, last_type, q.category)

    def _screened_fill(
        self, q: Query, arrays: VersionArrays | None, popular: list[Any], epoch: bytes | None
    ) -> list[tuple[str, float]]:
        """The popularity fill (`_fill`) without the items `q.screen` refuses for certain."""
        fill = _fill(popular)
        if arrays is None or not q.screens:
            return fill
        pos = np.fromiter((arrays.item_pos.get(i, -1) for i, _ in fill), dtype=np.int32, count=len(fill))
        screened = q.screen(arrays, pos, self.meta.known(epoch))
        return fill if screened is None else [f for f, keep in zip(fill, screened.tolist(), strict=True) if keep]

    def _weigh(
        self, arrays: VersionArrays, history: list[HistoryEntry]
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        pos = arrays.item_pos
        known = [h for h in history if h.item_id in pos and h.type in TYPE_CODE]
        if not known:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        return history_weights(
            [pos[h.item_id] for h in known], [TYPE_CODE[h.type] for h in known],
            [math.nan if h.value is None else h.value for h in known], [h.ts for h in known],
            max(h.ts for h in known), arrays.history_config,
        )

    @staticmethod
    def _live_content(
        arrays: VersionArrays, raw: list[bytes | None], live_ids: list[str], exclude: set[str]
    ) -> list[Ranked]:
        """Candidates from items newer than the model: their content neighbours computed on upsert."""
        out: dict[str, Ranked] = {}
        for source, row in zip(live_ids, raw, strict=False):
            if not row:
                continue
            data = json.loads(row)
            for item_id, score in zip(data["ids"], data["scores"], strict=True):
                if item_id in exclude or item_id == source:
                    continue
                current = out.get(item_id)
                if current is None or score > current[1]:
                    out[item_id] = (item_id, float(score), 0.0, float(score), 0.0, source)
        return list(out.values())
