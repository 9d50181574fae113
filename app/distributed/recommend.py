"""The recommendation and item-audience stages over user shards (`app.worker.stage_recommend`,
`app.worker.stage_audience`), with the driver holding only item-sized results and a user sample."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.distributed import itemitem, shard_fit
from app.distributed.cluster import gather, gather_each, share, submit, tree_sum
from app.distributed.shards import ShardPlan
from app.eventlog import EventLog
from app.recommend.algo_audience import (
    ItemAudiences,
    audience_sources,
    audiences_from,
    item_shoppers,
    item_weights,
    merge_audiences,
)
from app.recommend.algo_content import ContentModel, content_neighbours, fit_content, item_document
from app.recommend.algo_neighbours import Neighbours
from app.recommend.algo_users import pearson_user_neighbours
from app.recommend.algo_validate import RecommenderConfig
from app.settings import Settings
from app.worker.load import Snapshot
from app.worker.stage_audience import audience_size, buyers_matrix
from app.worker.stage_recommend import USER_NN_MAX_USERS, choose_config, recommender_meta

#: Entries (items x audience size) of one block of item audiences, per list: about 16 MB.
AUDIENCE_BLOCK_ENTRIES = 2_000_000


@dataclass(frozen=True)
class ShardedRecommender:
    """What `RecommenderBuild` publishes, with the per-shopper matrices left on the shards (`fits`)."""

    config: RecommenderConfig
    fits: list[Any]  # futures of `ShardFit`, one per shard
    cf: Neighbours
    popularity: NDArray[np.float32]
    evidence: NDArray[np.float32]
    content: ContentModel
    content_nn: Neighbours
    user_nn: Neighbours  # over `user_rows`
    user_rows: NDArray[np.int64]  # shop-wide user index of each lookalike row
    user_row_ids: NDArray[np.object_]
    metrics: dict[str, Any]

    def meta(self) -> dict[str, str]:
        return recommender_meta(self.config)


def build_recommender(
    client: Any, plan: ShardPlan, snaps: list[Any], sample: EventLog, settings: Settings
) -> ShardedRecommender:
    """Validation on the driver's `sample` (every event on a shop up to `validation_events`), the
    winning configuration fitted over the shards."""
    k = settings.neighbours_k
    content = fit_content([item_document(item) for item in plan.catalog.items])
    content_nn = content_neighbours(content, k=k)
    config, metrics = choose_config(sample, content_nn, settings)
    fits = [
        submit(client, shard_fit.fit_shard, s, shard.lo, config) for s, shard in zip(snaps, plan.shards, strict=True)
    ]
    cf = itemitem.cf_neighbours(client, fits, plan.n_items, config.cf)
    popularity, evidence = (
        np.asarray(gather(client, tree_sum(client, [submit(client, _part, f, name) for f in fits])), dtype=np.float32)
        for name in ("popularity", "evidence")
    )
    user_nn, rows, row_ids = _lookalikes(client, plan, snaps, fits, config, k)
    return ShardedRecommender(config, fits, cf, popularity, evidence, content, content_nn, user_nn, rows, row_ids,
                              metrics)  # fmt: skip


def _part(fit: shard_fit.ShardFit, name: str) -> NDArray[np.float64]:
    return np.asarray(getattr(fit, name), dtype=np.float64)


def _lookalikes(
    client: Any, plan: ShardPlan, snaps: list[Any], fits: list[Any], config: RecommenderConfig, k: int
) -> tuple[Neighbours, NDArray[np.int64], NDArray[np.object_]]:
    """Pearson lookalikes among the most active shoppers, as `build_recommender` picks them, their rows
    fetched from the shards that hold them."""
    activity = np.concatenate(
        gather(
            client, [submit(client, shard_fit.graded_activity, s, f, config) for s, f in zip(snaps, fits, strict=True)]
        )
    )
    rows = np.flatnonzero(activity >= 2)
    if len(rows) > USER_NN_MAX_USERS:
        rows = np.sort(rows[np.argsort(-activity[rows], kind="stable")[:USER_NN_MAX_USERS]])
    rows = rows.astype(np.int64)
    if len(rows) < 2:
        return Neighbours.empty(0, 1), rows, np.zeros(0, dtype=object)
    parts, ids = [], []
    for s, f, shard in zip(snaps, fits, plan.shards, strict=True):
        mine = rows[(rows >= shard.lo) & (rows < shard.hi)] - shard.lo
        if len(mine):
            parts.append(submit(client, shard_fit.graded_rows, s, f, config, mine))
            ids.append(submit(client, _user_ids, s, mine))
    x = sp.csr_matrix(sp.vstack(gather(client, parts)))
    return pearson_user_neighbours(x, k=min(k, 50)), rows, np.concatenate(gather(client, ids))


def _user_ids(snapshot: Snapshot, rows: NDArray[np.int64]) -> NDArray[np.object_]:
    return np.asarray(snapshot.log.user_ids[rows], dtype=object)


def build_audiences(client: Any, plan: ShardPlan, snaps: list[Any], rec: ShardedRecommender) -> ItemAudiences:
    """`app.worker.stage_audience.build_audiences` one block of items at a time: each shard ranks its
    shoppers for the block's items, the shards' lists are merged pairwise on the workers, and the
    driver copies the merged block into place. An item's ranking depends on its row alone, so blocks
    are exact; a worker holds a block's lists, never the catalogue's (`MAX_ENTRIES` per list whatever
    the shop: at one go that was the largest thing a worker held, and it did not shrink with shards)."""
    hybrid, n_items = rec.config.hybrid, plan.n_items
    content = rec.content_nn.to_csr(n_items) if rec.content_nn.n == n_items else None
    weights = item_weights(rec.cf.to_csr(n_items), content, rec.evidence, hybrid.alpha, hybrid.evidence_c)
    shoppers = np.asarray(gather(client, tree_sum(client, [submit(client, _shoppers, f) for f in rec.fits])))
    sources = share(client, audience_sources(weights, shoppers.astype(np.int64)))
    n = audience_size(n_items, plan.n_users)
    rows = max(1, AUDIENCE_BLOCK_ENTRIES // n)
    blocks = [(start, min(start + rows, n_items)) for start in range(0, n_items, rows)]
    shards = list(zip(snaps, rec.fits, strict=True))
    merged = [
        tree_sum(client, [submit(client, _shard_audiences, s, f, sources, n, *block) for s, f in shards], add=_Merge(n))
        for block in blocks
    ]
    out = ItemAudiences(others=Neighbours.empty(n_items, n), buyers=Neighbours.empty(n_items, n))
    for (start, stop), block in zip(blocks, gather_each(client, merged), strict=True):
        for whole, part in ((out.others, block.others), (out.buyers, block.buyers)):
            whole.indices[start:stop], whole.scores[start:stop] = part.indices, part.scores
    return out


def _shoppers(fit: shard_fit.ShardFit) -> NDArray[np.int64]:
    return item_shoppers(fit.history)


def _shard_audiences(
    snapshot: Snapshot, fit: shard_fit.ShardFit, sources: sp.csr_matrix, n: int, start: int, stop: int
) -> ItemAudiences:
    """The shard's shoppers ranked for items start..stop, as shop-wide user indices."""
    if "buyers" not in fit.derived:  # every block reads it: made once per worker holding the shard
        fit.derived["buyers"] = sp.csc_matrix(buyers_matrix(snapshot))
    local = audiences_from(sp.csr_matrix(sources[start:stop]), fit.history, fit.derived["buyers"][:, start:stop], n)

    def shift(nn: Neighbours) -> Neighbours:
        return replace(nn, indices=np.where(nn.indices >= 0, nn.indices + fit.lo, -1).astype(np.int32))

    return ItemAudiences(others=shift(local.others), buyers=shift(local.buyers))


@dataclass(frozen=True)
class _Merge:
    n: int

    def __call__(self, a: ItemAudiences, b: ItemAudiences) -> ItemAudiences:
        return merge_audiences(a, b, self.n)
