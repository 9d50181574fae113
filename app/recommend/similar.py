"""Similar items (hybrid, CF or content) and similar users (lookalikes) from the current version."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import redis.asyncio as aioredis

from app.errors import ItemNotFound
from app.recommend import reasons
from app.recommend.algo_blend import score_user
from app.recommend.model_cache import ModelCache
from app.recommend.schemas import Recommendations, RecommendedItem, SimilarUser, SimilarUsers, Sources
from app.store import live_reads
from app.store.codec import decode_item_meta, text, unpack_neighbours
from app.store.keys import Keys

Mode = Literal["hybrid", "cf", "content"]


async def similar_items(
    redis: aioredis.Redis, keys: Keys, cache: ModelCache, item_id: str, n: int, mode: Mode,
    available_only: bool = True,
) -> Recommendations:
    pipe = redis.pipeline(transaction=False)
    pipe.get(keys.model_pointer())
    pipe.hget(keys.item_meta_of(item_id), item_id)
    pipe.hget(keys.live_content(), item_id)
    version_raw, own_meta_raw, live = await pipe.execute()
    own_meta = decode_item_meta(own_meta_raw)
    if own_meta is None:
        raise ItemNotFound(f"No item `{item_id}`.")
    version = version_raw.decode() if version_raw else None
    candidates: list[tuple[str, float, float, float]] = []  # id, total, cf, content
    if version is not None:
        arrays = await cache.get(version)
        pos = arrays.item_pos.get(item_id)
        if pos is not None:
            pipe = redis.pipeline(transaction=False)
            pipe.hget(keys.model(version, "cf"), item_id)
            pipe.hget(keys.model(version, "content"), item_id)
            cf_raw, ct_raw = await pipe.execute()
            cf_i, cf_s = unpack_neighbours(cf_raw) if cf_raw else (np.zeros(0, np.int32), np.zeros(0, np.float32))
            ct_i, ct_s = unpack_neighbours(ct_raw) if ct_raw else (np.zeros(0, np.int32), np.zeros(0, np.float32))
            if live and mode != "cf":  # the item changed since the rebuild: its live content row is newer
                data = json.loads(live)
                known = [(arrays.item_pos[i], s) for i, s in zip(data["ids"], data["scores"], strict=True)
                         if i in arrays.item_pos]
                ct_i = np.array([k for k, _ in known], dtype=np.int32)
                ct_s = np.array([s for _, s in known], dtype=np.float32)
            if mode == "cf":
                ct_i, ct_s = ct_i[:0], ct_s[:0]
            elif mode == "content":
                cf_i, cf_s = cf_i[:0], cf_s[:0]
            width = max(len(cf_i), len(ct_i), 1)

            def pad_i(a: Any) -> Any:
                return np.pad(a, (0, width - len(a)), constant_values=-1)[None, :]

            def pad_s(a: Any) -> Any:
                return np.pad(a, (0, width - len(a)))[None, :]

            hybrid = replace(arrays.config.hybrid, pop_weight=0.0, n_popular=0)
            if mode != "hybrid":
                hybrid = replace(hybrid, alpha=1.0 if mode == "cf" else 0.0, evidence_c=0.0)
            scores = score_user(
                np.array([pos], dtype=np.int32), np.ones(1, dtype=np.float32),
                pad_i(cf_i), pad_s(cf_s), pad_i(ct_i), pad_s(ct_s), arrays.evidence, arrays.popularity,
                hybrid, exclude=np.array([pos], dtype=np.int32), n=4 * n + 20,
            )
            candidates = [
                (str(arrays.item_ids[i]), float(t), float(c), float(x))
                for i, t, c, x in zip(scores.items, scores.total, scores.cf, scores.content, strict=True)
            ]
    if not candidates and live and mode != "cf":
        data = json.loads(live)
        candidates = [(i, float(s), 0.0, float(s)) for i, s in zip(data["ids"], data["scores"], strict=True)]

    category = (own_meta.get("c") or [None])[0]
    popular = await live_reads.top(redis, keys, category, 4 * n + 21)
    top = float(popular[0][1]) if popular and popular[0][1] > 0 else 1.0
    fill = [(text(m), s / top) for m, s in popular if text(m) != item_id]
    wanted = list(dict.fromkeys([c[0] for c in candidates] + [f[0] for f in fill]))
    metas = dict(zip(wanted, await live_reads.metas(redis, keys, wanted), strict=True))

    def ok(other: str) -> bool:
        m = decode_item_meta(metas.get(other))
        return m is not None and (not available_only or bool(m.get("a", True)))

    name = f"“{own_meta['t']}”" if own_meta.get("t") else f"item {item_id}"
    items: list[RecommendedItem] = []
    for other, total, cf, ct in candidates:
        if len(items) < n and ok(other):
            why = f"shoppers who chose {name} also chose this" if cf >= ct else f"similar to {name}"
            items.append(RecommendedItem(item_id=other, score=round(total, 6),
                                         sources=Sources(cf=round(cf, 6), content=round(ct, 6), popularity=0.0),
                                         reason=why, title=decode_item_meta(metas[other]).get("t")))  # type: ignore[union-attr]
    personal = len(items)
    seen = {i.item_id for i in items}
    for other, pop in fill:
        if len(items) < n and other not in seen and ok(other):
            m = decode_item_meta(metas[other])
            items.append(RecommendedItem(item_id=other, score=round(0.01 * pop, 6),
                                         sources=Sources(cf=0.0, content=0.0, popularity=round(pop, 6)),
                                         reason=reasons.popular(m, category), title=(m or {}).get("t")))
            seen.add(other)
    strategy = f"similar_{mode}" if personal else "popularity_fallback"
    return Recommendations(recommendation_id=f"{strategy}.{uuid.uuid4().hex[:16]}", model_version=version,
                           strategy=strategy, items=items)


async def similar_users(cache: ModelCache, user_id: str, n: int) -> SimilarUsers:
    version, rows, ids = await cache.lookalike_rows([user_id])
    if not rows:
        return SimilarUsers(user_id=user_id, model_version=version, users=[])
    idx, scores = rows[0]
    users = [
        SimilarUser(user_id=str(ids[i]), score=round(float(s), 6))
        for i, s in zip(idx, scores, strict=True)
        if 0 <= i < len(ids) and ids[i]  # an erased user's id is blanked in the table
    ]
    return SimilarUsers(user_id=user_id, model_version=version, users=users[:n])
