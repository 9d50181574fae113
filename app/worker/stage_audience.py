"""The item-audience stage of a rebuild: per item, the shoppers most likely to buy it (issue 15, part 3).

Why precomputed rather than served from the CF rows: an item's audience is a column of
history @ item-item (`app.recommend.algo_audience`), which needs every shopper's history, and those
live one Redis list per shopper. Reading them all per request is out of the question, and a reverse
index (item -> shoppers who touched it) read at request time costs a popular item's whole following
(hundreds of thousands of entries) per call. The rebuild already holds the history matrix, so it
ranks every item's shoppers once and publishes the top `n` per item: a request is then one HMGET.

Bounded: at most `MAX_ENTRIES` (user, score) pairs per list over the catalog, so `n` per item is
`AUDIENCE_SIZE` on small and medium catalogs and shrinks on very large ones (never below `MIN_SIZE`).
Rows point at the version's user id table ("users"), so erasing a shopper blanks them out of every
audience at once, as it does for lookalikes (`app.store.erasure`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import TYPE_CODE
from app.recommend.algo_audience import PARTS, ItemAudiences, item_audiences, item_weights
from app.store.versions import VersionWriter
from app.worker.load import Snapshot
from app.worker.stage_recommend import RecommenderBuild, _rows

AUDIENCE_SIZE = 2_000
"""Shoppers kept per item and list: 20 pages of 100 for a campaign, and what an export streams."""
MIN_SIZE = 200
MAX_ENTRIES = 20_000_000
"""Per list, over the catalog: 160 MB in Redis at most (int32 index + float32 score each)."""


def audience_size(n_items: int, n_users: int) -> int:
    return max(1, min(n_users, max(MIN_SIZE, min(AUDIENCE_SIZE, MAX_ENTRIES // max(1, n_items)))))


def buyers_matrix(snapshot: Snapshot) -> sp.csr_matrix:
    """csr bool[n_users, n_items]: who bought each item in the snapshot."""
    log = snapshot.log
    rows = np.flatnonzero((log.type == TYPE_CODE["purchase"]) & (log.item >= 0))
    data: NDArray[np.bool_] = np.ones(len(rows), dtype=bool)
    m = sp.csr_matrix((data, (log.user[rows], log.item[rows])), shape=(log.n_users, log.n_items))
    m.sum_duplicates()
    return m


def build_audiences(snapshot: Snapshot, recommender: RecommenderBuild) -> ItemAudiences:
    log = snapshot.log
    hybrid = recommender.config.hybrid
    content = recommender.content_nn.to_csr(log.n_items) if recommender.content_nn.n == log.n_items else None
    weights = item_weights(recommender.fitted.cf.to_csr(log.n_items), content, recommender.fitted.evidence,
                           hybrid.alpha, hybrid.evidence_c)
    return item_audiences(recommender.fitted.history, weights, buyers_matrix(snapshot),
                          audience_size(log.n_items, log.n_users))


def publish_audiences(writer: VersionWriter, snapshot: Snapshot, audiences: ItemAudiences) -> None:
    item_ids = snapshot.log.item_ids
    writer.hash(PARTS[0], _rows(item_ids, audiences.others))
    writer.hash(PARTS[1], _rows(item_ids, audiences.buyers))
