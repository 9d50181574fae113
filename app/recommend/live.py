"""Content neighbours for new or updated items at once, before the next rebuild.

The API places the upserted items among the catalog of the serving version: their TF-IDF rows
(vectorised with the version's idf) times the version's item matrix, reduced to top-k block by block
(`blockwise_topk` over sparse products), in a worker thread. A batch of 500 items against a 100k
catalogue used to materialise a dense 500 x 100k float64 matrix (400 MB) on the event loop; now one
block of rows at a time is held, and requests keep being served while it runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import anyio.to_thread
import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray

from app.recommend.algo_content import ContentModel, item_document, vectorize
from app.recommend.algo_neighbours import Neighbours, blockwise_topk
from app.recommend.model_cache import ModelCache
from app.store.codec import text
from app.store.keys import Keys

LIVE_K = 50
MAX_LIVE_BATCH = 500  # larger catalog loads wait for the rebuild, which recomputes everything anyway
#: Budget of one block of similarity rows (`blockwise_topk` counts 8 bytes per catalogue item and row:
#: 2 rows against a 100k catalogue). A block really holds about five times this at its peak (the
#: product, its packed copy, the partition), and two blocks run at once: tens of MB, whatever the batch.
LIVE_BLOCK_BYTES = 2 * 1024 * 1024


def place_documents(
    docs: Sequence[str], model: ContentModel, own: NDArray[np.integer], k: int = LIVE_K,
    block_bytes: int = LIVE_BLOCK_BYTES,
) -> Neighbours:
    """Content top-k of new documents against the fitted catalogue, block by block.

    Parameters
    ----------
    docs : the documents of b items (`item_document`)
    model : the serving version's content model, catalogue of n items
    own : int[b], each document's own catalogue row (never its own neighbour), -1 for a new item

    Returns
    -------
    Neighbours over the b documents: indices int32[b, k] into the catalogue, scores float32[b, k].
    """
    queries = vectorize(docs, model.idf)
    catalog_t = model.inverted.T  # the CSC copy transposed: CSR [n_features, n], no copy per block
    return blockwise_topk(len(docs), model.n_items, k, lambda s, e: queries[s:e] @ catalog_t,
                          block_bytes=block_bytes, row_ids=np.asarray(own))


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
    docs = [item_document(item) for item in items]
    own = np.array([arrays.item_pos.get(str(item["item_id"]), -1) for item in items], dtype=np.int64)
    placed = await anyio.to_thread.run_sync(place_documents, docs, model, own)
    mapping = {}
    for row, item in enumerate(items):
        keep = placed.indices[row] >= 0
        mapping[str(item["item_id"])] = json.dumps({
            "ids": [str(arrays.item_ids[i]) for i in placed.indices[row][keep]],
            "scores": [round(float(s), 6) for s in placed.scores[row][keep]],
        })
    await redis.hset(keys.live_content(), mapping=mapping)  # type: ignore[arg-type]
    return len(mapping)
