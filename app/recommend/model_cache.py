"""The static arrays of a published model version, loaded once per version into each API process.

The id tables, evidence and popularity vectors are read once per version and kept here, keyed by
version, so a request never mixes versions. Item-item neighbour rows stay in Redis; the rows
requests ask for are kept in a bounded per-version `RowCache`, so a hot item's rows cross the
network once per version and process.

The client may have no per-command timeout (the serving one has none, see `store.client`), so every
round trip here is bounded: a request's reads by `TIMEOUT_SECONDS`, a version's one-off loads (megabytes
on a large catalog) by `LOAD_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import redis.asyncio as aioredis
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_blend import HybridConfig, top_popular
from app.recommend.algo_content import ContentModel
from app.recommend.algo_matrix import InteractionConfig
from app.recommend.algo_similarity import CFConfig
from app.recommend.algo_validate import RecommenderConfig, history_config
from app.recommend.row_cache import RowCache
from app.store.batch import round_trip
from app.store.client import TIMEOUT_SECONDS
from app.store.codec import text, unpack_neighbours
from app.store.keys import Keys

LOAD_TIMEOUT_SECONDS = 30.0


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def config_from_json(raw: str | None) -> RecommenderConfig:
    if not raw:
        return RecommenderConfig()
    data = json.loads(raw)
    return RecommenderConfig(
        interaction=_from_dict(InteractionConfig, data.get("interaction", {})),
        cf=_from_dict(CFConfig, data.get("cf", {})),
        hybrid=_from_dict(HybridConfig, data.get("hybrid", {})),
    )


ITEM_PARTS = ("cf", "content")
"""The item-item neighbour hashes of a version, cached row by row in `VersionArrays.rows`."""

Rows = tuple[NDArray[np.int32], NDArray[np.float32]]
_EMPTY: Rows = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))


@dataclass
class VersionArrays:
    version: str
    item_ids: NDArray[np.object_]
    item_pos: dict[str, int]
    evidence: NDArray[np.float32]
    popularity: NDArray[np.float32]
    config: RecommenderConfig
    built_at: float
    user_ids: NDArray[np.object_] | None = None
    user_epoch: int = -1
    content: ContentModel | None = None
    rows: dict[str, RowCache] = field(default_factory=dict)
    history_config: InteractionConfig = field(default_factory=InteractionConfig)
    """How serving weighs a live history (`algo_validate.history_config` of `config`), made once."""
    popular: NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    """`algo_blend.top_popular` of the version, which every request's candidates include."""


class ModelCache:
    """Per-process cache of the current version's arrays (the last two versions are kept)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._versions: dict[str, VersionArrays] = {}
        self._lock = asyncio.Lock()
        self.history_limit = HybridConfig().history_limit
        """Live history entries the newest loaded version scores (read before the version is known)."""

    async def get(self, version: str) -> VersionArrays:
        cached = self._versions.get(version)
        if cached is not None:
            return cached
        async with self._lock:
            if version in self._versions:
                return self._versions[version]
            arrays = await self._load(version)
            if len(self._versions) >= 2:
                self._versions.pop(next(iter(self._versions)))
            self._versions[version] = arrays
            self.history_limit = arrays.config.hybrid.history_limit
            return arrays

    async def _load(self, version: str) -> VersionArrays:
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(k.model(version, "items"))
        pipe.get(k.model(version, "evidence"))
        pipe.get(k.model(version, "popularity"))
        pipe.hgetall(k.model(version, "meta"))
        async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
            items, evidence, popularity, meta = await pipe.execute()
        item_ids = np.array(items.decode().split("\n") if items else [], dtype=object)
        meta = {key.decode(): value.decode() for key, value in meta.items()}
        config = config_from_json(meta.get("recommender_config"))
        popularity_arr = np.frombuffer(popularity or b"", dtype="<f4")
        return VersionArrays(
            version=version,
            item_ids=item_ids,
            item_pos={item_id: pos for pos, item_id in enumerate(item_ids)},
            evidence=np.frombuffer(evidence or b"", dtype="<f4"),
            popularity=popularity_arr,
            config=config,
            built_at=float(meta.get("built_at", 0.0)),
            rows={part: RowCache(len(item_ids)) for part in ITEM_PARTS},
            history_config=history_config(config),
            popular=top_popular(popularity_arr, config.hybrid.n_popular),
        )

    async def neighbour_rows(self, arrays: VersionArrays, positions: list[int]) -> dict[str, Rows]:
        """The CF and content rows of the items at `positions`: int32[h, width] indices (-1 padded)
        and float32[h, width] scores per part, row r for positions[r].

        Cached rows cost no I/O; the others are read in one round trip and cached for the version.
        """
        gathered = {part: arrays.rows[part].gather(positions) for part in ITEM_PARTS}
        misses = [part for part in ITEM_PARTS if gathered[part][2]]
        if misses:
            replies = await round_trip(self.redis, [
                ("HMGET", self.keys.model(arrays.version, part),
                 *[arrays.item_ids[positions[row]] for row in gathered[part][2]])
                for part in misses
            ], TIMEOUT_SECONDS)
            for part, raw in zip(misses, replies, strict=True):
                out_i, out_s, missing = gathered[part]
                fetched = [unpack_neighbours(r) if r else _EMPTY for r in raw]
                gathered[part] = (*arrays.rows[part].complete((out_i, out_s), positions, missing, fetched), [])
        return {part: (out_i, out_s) for part, (out_i, out_s, _) in gathered.items()}

    async def user_ids(self, arrays: VersionArrays, epoch: int) -> NDArray[np.object_]:
        """The version's user id table; reloaded when a user was erased since (epoch changed)."""
        if arrays.user_ids is None or arrays.user_epoch != epoch:
            async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
                raw = await self.redis.get(self.keys.model(arrays.version, "users"))
            arrays.user_ids = np.array(text(raw).split("\n") if raw else [], dtype=object)
            arrays.user_epoch = epoch
        return arrays.user_ids

    async def lookalike_rows(
        self, user_ids: list[str]
    ) -> tuple[str | None, list[tuple[NDArray[np.int32], NDArray[np.float32]]], NDArray[np.object_]]:
        """The serving version, the lookalike rows of those `user_ids` that have one (dense user indices
        and scores), and the id table the indices point into (erased users blanked).

        Two round trips: pointer + erasure epoch, then the rows; the id table is cached per version.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.model_pointer())
        pipe.get(self.keys.erasure_epoch())
        async with asyncio.timeout(TIMEOUT_SECONDS):
            version_raw, epoch = await pipe.execute()
        if version_raw is None:
            return None, [], np.zeros(0, dtype=object)
        version = text(version_raw)
        async with asyncio.timeout(TIMEOUT_SECONDS):
            raw_rows = await self.redis.hmget(self.keys.model(version, "user_nn"), user_ids)
        rows = [unpack_neighbours(r) for r in raw_rows if r]
        ids = await self.user_ids(await self.get(version), int(epoch or 0)) if rows else np.zeros(0, dtype=object)
        return version, rows, ids

    async def content(self, arrays: VersionArrays) -> ContentModel | None:
        """The fitted content state (idf + item matrix), for placing a new item at once."""
        if arrays.content is None:
            k, v = self.keys, arrays.version
            pipe = self.redis.pipeline(transaction=False)
            for part in ("content_idf", "content_indptr", "content_indices", "content_data"):
                pipe.get(k.model(v, part))
            async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
                idf, indptr, indices, data = await pipe.execute()
            if idf is None or indptr is None:
                return None
            matrix = sp.csr_matrix(
                (
                    np.frombuffer(data, dtype="<f4"),
                    np.frombuffer(indices, dtype="<i4"),
                    np.frombuffer(indptr, dtype="<i8"),
                ),
                shape=(len(arrays.item_ids), len(idf) // 4),
            )
            arrays.content = ContentModel(idf=np.frombuffer(idf, dtype="<f4"), matrix=matrix)
        return arrays.content
