"""What each shard contributes to the recommender: functions that run on a Dask worker, on its shard.

Every item-item model of `app.recommend.algo_similarity` is a sum over shoppers, so a shard computes
its shoppers' part of each block of item rows and the parts are summed (`app.distributed.itemitem`);
the per-shopper matrices (interactions, histories) stay on the shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_matrix import DEFAULT_WEIGHTS, interactions
from app.recommend.algo_popularity import item_evidence, popularity
from app.recommend.algo_sequence import transition_counts
from app.recommend.algo_similarity import rp3_walks
from app.recommend.algo_validate import RecommenderConfig, user_histories
from app.worker.load import Snapshot


@dataclass
class ShardFit:
    """The shard's fitted matrices; user rows are the shard's (`lo` maps them to the shop's)."""

    lo: int
    x: sp.csr_matrix  # interactions, float32[n_shard_users, n_items]
    history: sp.csr_matrix  # history strengths, as serving weighs them
    popularity: NDArray[np.float64]  # the shard's part of the item sums
    evidence: NDArray[np.float64]
    transitions: sp.csr_matrix | None  # forward co-occurrence counts of the shard's streams
    derived: dict[str, Any] = field(default_factory=dict)
    """Matrices every block of a product reads, made once per worker holding the shard."""


def fit_shard(snapshot: Snapshot, lo: int, config: RecommenderConfig) -> ShardFit:
    """`app.recommend.algo_validate.fit` on one shard, up to the item-item step."""
    log, now, cf = snapshot.log, snapshot.now, config.cf
    x = interactions(log, config.interaction, now)
    transitions = None
    if cf.sequence_weight > 0:
        transitions = transition_counts(log, cf.sequence_window, cf.sequence_max_gap_days, config.interaction)
    return ShardFit(
        lo=lo,
        x=x,
        history=user_histories(log, config),
        popularity=popularity(log, config.hybrid.pop_half_life_days, now, config.interaction).astype(np.float64),
        evidence=item_evidence(x).astype(np.float64),
        transitions=transitions,
    )


def graded_activity(snapshot: Snapshot, fit: ShardFit, config: RecommenderConfig) -> NDArray[np.int64]:
    """Items per shopper in the graded matrix lookalikes use (`stage_recommend.build_recommender`)."""
    return np.asarray(np.diff(_graded(snapshot, fit, config).indptr), dtype=np.int64)


def graded_rows(snapshot: Snapshot, fit: ShardFit, config: RecommenderConfig, rows: NDArray[np.int64]) -> sp.csr_matrix:
    return sp.csr_matrix(_graded(snapshot, fit, config)[rows])


def _graded(snapshot: Snapshot, fit: ShardFit, config: RecommenderConfig) -> sp.csr_matrix:
    graded = replace(config.interaction, weights=dict(DEFAULT_WEIGHTS), binary=False)
    return fit.x if graded == config.interaction else interactions(snapshot.log, graded, snapshot.now)


# The item-item products, as (rows start..stop) x items blocks of the shard's part of the sum.


def product_bound(fit: ShardFit, kind: str) -> NDArray[np.int64]:
    """Per item row, an upper bound of the entries the shard adds to that row of the product."""
    if kind == "transitions":
        assert fit.transitions is not None
        return np.asarray(np.diff(fit.transitions.indptr), dtype=np.int64)
    pattern = sp.csr_matrix(fit.x, dtype=np.float64)
    pattern.data[:] = 1.0
    degree = np.diff(pattern.indptr).astype(np.float64)
    return np.asarray(pattern.T @ degree, dtype=np.int64).ravel()


def column_sums(fit: ShardFit, kind: str) -> NDArray[np.float64]:
    """The shard's part of the column sums a product's normalisation needs."""
    if kind == "cosine":
        x64 = sp.csr_matrix(fit.x, dtype=np.float64)
        return np.asarray(x64.multiply(x64).sum(axis=0), dtype=np.float64).ravel()
    if kind == "rp3beta":
        return np.asarray(sp.csr_matrix(fit.x, dtype=np.float64).sum(axis=0), dtype=np.float64).ravel()
    if kind == "transitions":
        assert fit.transitions is not None
        return np.asarray(fit.transitions.sum(axis=0), dtype=np.float64).ravel()
    raise ValueError(f"no column sums for {kind!r}")


def product_block(
    fit: ShardFit, kind: str, start: int, stop: int, aux: tuple[float, NDArray[np.float64]] | None = None
) -> sp.csr_matrix:
    """The shard's part of rows start..stop of the product `kind`, csr float64[stop - start, n_items]:
    X^T X ("gram", for cosine and EASE), the RP3beta walk ("rp3beta": aux = (alpha, every shopper's
    column sums)), or the transition counts ("transitions")."""
    if kind == "transitions":
        assert fit.transitions is not None
        return sp.csr_matrix(fit.transitions[start:stop], dtype=np.float64)
    if kind == "gram":
        if "x64" not in fit.derived:
            x64 = sp.csr_matrix(fit.x, dtype=np.float64)
            fit.derived["x64"] = x64, sp.csr_matrix(x64.T)
        x64, xt = fit.derived["x64"]
        return sp.csr_matrix(xt[start:stop] @ x64)
    if kind == "rp3beta":
        assert aux is not None
        if "rp3" not in fit.derived:
            fit.derived["rp3"] = rp3_walks(sp.csr_matrix(fit.x, dtype=np.float64), aux[1], aux[0])
        p_iu, p_ui = fit.derived["rp3"]
        return sp.csr_matrix(p_iu[start:stop] @ p_ui)
    raise ValueError(f"unknown product {kind!r}")


def stacked(*fits: ShardFit) -> sp.csr_matrix:
    """The shards' interactions stacked in shop order (the whole matrix: ALS needs it in one process)."""
    return sp.csr_matrix(sp.vstack([f.x for f in sorted(fits, key=lambda f: f.lo)]))
