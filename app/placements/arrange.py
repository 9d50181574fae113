"""Arranging a scored pool under a placement's rules: filters, boosts, rotation, diversity, pins.

The pool comes from whichever route serves the placement (`Pool`); the rules themselves are pure
functions (`rules`). Only the items shown are dressed as response items, and what was shown is
recorded (one pipelined write) when the placement rotates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import scipy.sparse as sp
from numpy.typing import NDArray

from app.placements import rules
from app.placements.serving import SHOWN_CAP, SHOWN_TTL_SECONDS, Placed
from app.recommend.meta_cache import MetaCache
from app.recommend.model_cache import ModelCache, VersionArrays
from app.recommend.schemas import Recommendations, RecommendedItem, Sources
from app.recommend.service import Chosen, Query
from app.store import live_reads
from app.store.batch import Command, round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import decode_item_meta
from app.store.keys import Keys


@dataclass(frozen=True)
class Pool:
    """A scored candidate pool in rank order, whichever route made it, and how to dress what is shown.

    A shopper's or a session's pool stays as `service.Chosen` tuples (`chosen_pool`): only the few
    items shown become response items. Similar items arrive as a response already (`response_pool`)."""

    ids: list[str]
    scores: list[float]
    meta: Mapping[str, dict[str, Any] | None]
    """Metadata the route read for the pool (more comes from the recommender's cache or a read)."""
    strategy: str
    admitted: bool
    """True when the route applied the query's filters already (`q.admits`)."""
    dress: Callable[[int, float | None], Any]
    """Pool index, adjusted score (None: as scored) -> a response item (a dict or a RecommendedItem)."""
    respond: Callable[[list[Any], dict[str, Any]], Recommendations]
    """The response with these items and these extra fields (placement, experiment...)."""


def chosen_pool(chosen: Chosen) -> Pool:
    picked = chosen.picked
    return Pool([r[0] for r in picked], [r[1] for r in picked], chosen.meta, chosen.strategy, True,
                lambda k, score: chosen.item(picked[k], score),
                lambda items, extra: chosen.response(items, **extra))


def response_pool(recs: Recommendations) -> Pool:
    items = recs.items

    def dress(k: int, score: float | None) -> RecommendedItem:
        return items[k] if score is None else items[k].model_copy(update={"score": round(score, 6)})

    return Pool([i.item_id for i in items], [i.score for i in items], {}, recs.strategy, False, dress,
                lambda shown, extra: recs.model_copy(update={"items": shown, **extra}))


async def arrange(
    redis: aioredis.Redis, keys: Keys, models: ModelCache, metas: MetaCache, placed: Placed,
    pool: Pool, q: Query, n: int, exclusions_key: str | None = None,
    excluded: frozenset[str] | set[str] = frozenset(), version: str | None = None,
) -> Recommendations:
    """`pool` (scored for `q`) under the placement's rules, `n` items; records what was shown when
    the placement rotates. Pins are checked against `excluded` (the basket, the item itself) and the
    set at `exclusions_key` (the shopper's purchases, or everything seen). `version`: the model that
    scored the pool (content similarity for MMR)."""
    spec = placed.spec
    extra: dict[str, Any] = {"placement": placed.name}
    if placed.experiment is not None:
        extra.update(placed.experiment.tag(pool.strategy))
    if not placed.reorders():
        return pool.respond([pool.dress(k, None) for k in range(min(n, len(pool.ids)))], extra)
    pins = [(p.item_id, p.position) for p in spec.pins if p.position <= n]
    known = metas.current()
    read = placed.pins
    meta: dict[str, Any] = dict(read.meta) if read is not None else {}
    wanted = [i for i in pool.ids if i not in pool.meta and i not in known]
    wanted += [p for p, _ in pins if p not in known and p not in meta and p not in pool.meta]
    check_pins = bool(pins and exclusions_key) and (read is None or exclusions_key not in read.excluded)
    commands: list[Command] = live_reads.meta_reads(keys, wanted)
    if check_pins and exclusions_key:
        commands.append(("SMISMEMBER", exclusions_key, *[p for p, _ in pins]))
    replies = await round_trip(redis, commands, TIMEOUT_SECONDS) if commands else []
    if wanted:
        raw = live_reads.meta_replies(keys, wanted, replies[: len(commands) - check_pins])
        meta.update(zip(wanted, map(decode_item_meta, raw), strict=True))
    excluded_pins: set[str] = set()
    if check_pins:
        excluded_pins = {p for (p, _), hit in zip(pins, replies[-1], strict=True) if hit}
    elif pins and exclusions_key and read is not None:
        excluded_pins = read.excluded[exclusions_key]

    def meta_of(item_id: str) -> dict[str, Any] | None:
        return pool.meta.get(item_id) or known.get(item_id) or meta.get(item_id)

    pinned = {p for p, _ in pins}
    drop = set(spec.filters.exclude_items) | pinned
    ids, raw_scores = pool.ids, pool.scores
    if not (pool.admitted and drop.isdisjoint(ids)):
        # pool indices kept (a shopper's pool passed the filters in the recommender already)
        kept = [k for k, item_id in enumerate(ids) if item_id not in drop
                and (pool.admitted or q.admits(meta_of(item_id)))]
        ids, raw_scores = [ids[k] for k in kept], [raw_scores[k] for k in kept]
    arrays = await models.get(version) if version else None
    pos = (np.fromiter((arrays.item_pos.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
           if arrays is not None else np.full(len(ids), -1, dtype=np.int64))
    factors, categories = _per_item(placed, ids, pos, arrays, known, meta_of)
    scores = rules.adjusted_scores(ids, raw_scores, (), spec, placed.shown, time.time(), factors)
    sim = None
    if spec.diversity and spec.diversity.lambda_ is not None and arrays is not None:
        content = await models.content(arrays)
        sim = content_cosine(content.matrix, pos) if content is not None else None
    eligible = [(p, at) for p, at in pins
                if p not in excluded_pins and p not in excluded and q.admits(meta_of(p))]
    order = rules.select(scores, categories, spec.diversity, n - len(eligible), sim)
    index = {item_id: k for k, item_id in enumerate(pool.ids)}
    rank = {ids[j]: j for j in order}
    items: list[Any] = []
    shown: list[str] = []
    for item_id in rules.place_pins([ids[j] for j in order], eligible):
        shown.append(item_id)
        if item_id in pinned:
            items.append(pool.dress(index[item_id], None) if item_id in index
                         else _featured(item_id, meta_of(item_id)))
        else:
            items.append(pool.dress(index[item_id], float(scores[rank[item_id]])))
    if spec.rotation is not None and placed.user_id is not None and shown:
        await _record_shown(redis, keys.shown(placed.user_id), placed.name, shown)
    return pool.respond(items, extra)


def _featured(item_id: str, meta: dict[str, Any] | None) -> RecommendedItem:
    return RecommendedItem(item_id=item_id, score=0.0, sources=Sources(cf=0.0, content=0.0, popularity=0.0),
                           reason="featured", title=(meta or {}).get("t"))


def _per_item(
    placed: Placed, ids: list[str], pos: NDArray[np.int64], arrays: VersionArrays | None,
    known: Mapping[str, Any], meta_of: Callable[[str], dict[str, Any] | None],
) -> tuple[NDArray[np.float64] | None, list[Hashable | None]]:
    """Each pool item's boost factor (None: no boosts) and primary category code (None: none), read
    from the placement's per-position tables (`memo.ByPosition`): computed per item only the first
    time the item comes up under this model version and catalog epoch."""
    spec, memos = placed.spec, placed.memos

    def metas(k: int) -> dict[str, Any]:
        return meta_of(ids[k]) or {}

    if memos is None or arrays is None:  # the item route's pool before a model exists: computed
        listed = [metas(k) for k in range(len(ids))]
        factors = np.array([rules.boost_factor(spec, m) for m in listed]) if spec.boosts else None
        return factors, [rules.primary_category(m) for m in listed]
    factors = None
    if spec.boosts:
        factors = memos.boosts.values(arrays.item_ids, arrays, known, pos, metas, partial(rules.boost_factor, spec))
    codes = memos.categories.values(arrays.item_ids, arrays, known, pos, metas, memos.category_code)
    return factors, [c if c >= 0 else None for c in codes.astype(np.int64).tolist()]


@dataclass(frozen=True)
class PaddedRows:
    """A content matrix's rows as equal-width arrays, so a pool's rows gather in one indexing.

    features: int32[N, w] column indices (-1 padding); values: float32[N, w]; norms: float32[N] each
    row's squared norm. w is the longest row (27 on the benchmark shop, 22 on average)."""

    features: NDArray[np.int32]
    values: NDArray[np.float32]
    norms: NDArray[np.float32]

    MAX_PADDING = 2.0
    """Padded entries per stored one beyond which a matrix keeps its CSR form: a few long descriptions
    among short ones would otherwise multiply the memory."""

    @classmethod
    def of(cls, matrix: sp.csr_matrix) -> PaddedRows | None:
        lengths = np.diff(matrix.indptr)
        n, width = matrix.shape[0], int(lengths.max(initial=0))
        if n * width > cls.MAX_PADDING * matrix.nnz + n:
            return None
        filled = np.arange(width)[None, :] < lengths[:, None]
        features = np.full((n, width), -1, dtype=np.int32)  # the matrix stores its indices as int32
        values = np.zeros((n, width), dtype=np.float32)
        features[filled] = matrix.indices
        values[filled] = matrix.data
        return cls(features, values, np.einsum("ij,ij->i", values, values))


_padded: dict[int, tuple[sp.csr_matrix, PaddedRows | None]] = {}
"""id(matrix) -> (matrix, its padded rows): a model version's, made once per process (the entry holds
the matrix, so its id is not reused while the entry lives; the two latest are kept, as models are)."""


def padded_rows(matrix: sp.csr_matrix) -> PaddedRows | None:
    hit = _padded.get(id(matrix))
    if hit is not None and hit[0] is matrix:
        return hit[1]
    if len(_padded) >= 2:
        _padded.pop(next(iter(_padded)))
    rows = _padded[id(matrix)] = (matrix, PaddedRows.of(matrix))
    return rows[1]


def _gathered(
    matrix: sp.csr_matrix, at: NDArray[np.int64]
) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64], NDArray[np.float32]]:
    """The entries of rows `at`: features int32[E] (-1 for padding), values float32[E], the row of
    each (an index into `at`) int64[E], and each row's squared norm float32[len(at)]."""
    padded = padded_rows(matrix)
    if padded is not None:
        width = padded.features.shape[1]
        rows = np.repeat(np.arange(len(at)), width)
        return padded.features[at].ravel(), padded.values[at].ravel(), rows, padded.norms[at]
    starts, stops = matrix.indptr[at], matrix.indptr[at + 1]
    lengths = (stops - starts).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    flat = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
    rows = np.repeat(np.arange(len(at)), lengths)
    values = matrix.data[flat].astype(np.float32)
    norms = np.bincount(rows, weights=values * values, minlength=len(at)).astype(np.float32)
    return matrix.indices[flat].astype(np.int32), values, rows, norms


def content_cosine(matrix: sp.csr_matrix, pos: NDArray[np.int64]) -> NDArray[np.float32]:
    """float32[P, P]: the dot products of the rows `pos` of the (row-normalised) content matrix; 0 for
    a position of -1 (an item newer than the model).

    Off the diagonal only the features two candidates share count, a few hundred of the thousand or so
    they use, so the product runs on a small dense block. scipy's row indexing and sparse product cost
    ~1.1 ms a request here, this ~0.1 ms (profiled)."""
    inside = np.flatnonzero(pos >= 0)
    at = pos[inside]
    features, values, rows, norms = _gathered(matrix, at)
    ordered = np.sort(features)  # np.unique(return_inverse=...) took 15x as long here
    twice = ordered[1:][(ordered[1:] == ordered[:-1]) & (ordered[1:] >= 0)]  # features of two or more
    used = twice[np.concatenate(([True], twice[1:] != twice[:-1]))] if len(twice) else twice
    block = np.zeros((len(inside), len(used)), dtype=np.float32)
    if len(used):
        column = np.minimum(np.searchsorted(used, features), len(used) - 1)
        shared = np.flatnonzero(used[column] == features)
        block[rows[shared], column[shared]] = values[shared]
    inner = block @ block.T
    inner[np.diag_indices_from(inner)] = norms
    if len(inside) == len(pos):
        return inner
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
