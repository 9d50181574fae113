"""Content neighbours for new or updated items at once, before the next rebuild.

The API places the upserted items among the catalog of the serving version: one sparse product of
their TF-IDF rows (vectorised with the version's idf) against the version's item matrix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from app.recommend.algo_content import item_document, vectorize
from app.recommend.algo_neighbours import topk_dense
from app.recommend.model_cache import ModelCache
from app.store.codec import text
from app.store.keys import Keys

LIVE_K = 50
MAX_LIVE_BATCH = 500  # larger catalog loads wait for the rebuild, which recomputes everything anyway


async def place_items(
    redis: aioredis.Redis, keys: Keys, cache: ModelCache, items: Sequence[Mapping[str, Any]]
) -> int:
    """Compute and store live content neighbours for `items`; returns how many were placed."""
    if not items or len(items) > MAX_LIVE_BATCH:
        return 0
    version = await redis.get(keys.model_pointer())
    if version is None:
        return 0
    arrays = await cache.get(text(version))
    model = await cache.content(arrays)
    if model is None or model.n_items == 0:
        return 0
    queries = vectorize([item_document(item) for item in items], model.idf)
    sims = np.asarray((queries @ model.matrix.T).toarray(), dtype=np.float64)
    own = [arrays.item_pos.get(str(item["item_id"]), -1) for item in items]
    for row, pos in enumerate(own):
        if pos >= 0:
            sims[row, pos] = 0.0  # never its own neighbour
    idx, scores = topk_dense(sims, LIVE_K)
    mapping = {}
    for row, item in enumerate(items):
        keep = idx[row] >= 0
        mapping[str(item["item_id"])] = json.dumps({
            "ids": [str(arrays.item_ids[i]) for i in idx[row][keep]],
            "scores": [round(float(s), 6) for s in scores[row][keep]],
        })
    await redis.hset(keys.live_content(), mapping=mapping)  # type: ignore[arg-type]
    return len(mapping)
