"""Item-item CF over user shards: each block of item rows summed over the shards, then cut to top-k.

The block's rows are whole (every shopper's part is in the sum), so each is normalised and cut exactly
as `app.recommend.algo_similarity` does in one process, and the driver receives only the k-wide rows.
Blocks are sized from an upper bound of their entries, so a worker holds one block's sum at a time
whatever the catalogue. EASE stays single-node: its dense inverse needs the whole item x item Gram
matrix in one process (capped at `CFConfig.ease_max_items`); ALS fits on the stacked interactions in
one task (capped at `CFConfig.als_max_items`), as `implicit` needs the whole matrix.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.distributed import shard_fit
from app.distributed.cluster import gather, gather_each, share, submit, tree_sum
from app.recommend.algo_audience import row_blocks
from app.recommend.algo_neighbours import Neighbours, merge_neighbours, topk_rows
from app.recommend.algo_sequence import transition_cosine
from app.recommend.algo_similarity import CFConfig, cosine_block, ease_from_gram, ease_topk, rp3_scale

#: Entries of one summed block (float64 value + int32 column: 12 bytes each, about 100 MB).
BLOCK_ENTRIES = 8_000_000


def cf_neighbours(client: Any, fits: list[Any], n_items: int, cf: CFConfig) -> Neighbours:
    """`app.recommend.algo_sequence.collaborative_neighbours` over the shards' fits (futures)."""
    base = _variant(client, fits, n_items, cf)
    if cf.sequence_weight <= 0:
        return base
    inn = _summed(client, fits, shard_fit.column_sums, "transitions")
    seq = _blockwise(client, fits, n_items, cf.k, "transitions", None, _finish_transitions, inn)
    return merge_neighbours(base, seq, cf.sequence_weight, cf.k)


def _variant(client: Any, fits: list[Any], n: int, cf: CFConfig) -> Neighbours:
    if cf.variant == "cosine":
        norms = np.sqrt(_summed(client, fits, shard_fit.column_sums, "cosine"))
        return _blockwise(client, fits, n, cf.k, "gram", None, _finish_cosine, (norms, cf.shrink))
    if cf.variant == "rp3beta":
        col_sum = _summed(client, fits, shard_fit.column_sums, "rp3beta")
        degree = gather(client, tree_sum(client, [submit(client, _evidence, f) for f in fits]))
        aux = (cf.rp3_alpha, col_sum)
        return _blockwise(client, fits, n, cf.k, "rp3beta", aux, _finish_rp3, rp3_scale(degree, cf.rp3_beta))
    if cf.variant == "ease":
        if n > cf.ease_max_items:
            raise ValueError(f"EASE needs a dense {n}^2 matrix; limit is {cf.ease_max_items} items")
        gram = tree_sum(client, [submit(client, shard_fit.product_block, f, "gram", 0, n) for f in fits])
        return cast(Neighbours, gather(client, submit(client, _ease, gram, cf)))
    if cf.variant == "als":
        return cast(Neighbours, gather(client, submit(client, _als, cf, *fits)))
    raise ValueError(f"unknown CF variant {cf.variant!r}")


def _evidence(fit: shard_fit.ShardFit) -> NDArray[np.float64]:
    return fit.evidence


def _summed(client: Any, fits: list[Any], fn: Any, *args: Any) -> NDArray[np.float64]:
    return np.asarray(gather(client, tree_sum(client, [submit(client, fn, f, *args) for f in fits])))


def _blockwise(
    client: Any, fits: list[Any], n: int, k: int, kind: str, aux: Any, finish: Any, finish_aux: Any
) -> Neighbours:
    """Every block of rows of the product `kind`, summed over the shards and cut by `finish` on a worker."""
    bound = np.minimum(
        _summed(client, fits, shard_fit.product_bound, "transitions" if kind == "transitions" else "x"), n
    )
    finish_aux_f = share(client, finish_aux)
    aux_f = share(client, aux) if aux is not None else None
    blocks = row_blocks(bound.astype(np.int64), BLOCK_ENTRIES)
    done = []
    for start, stop in blocks:
        parts = [submit(client, shard_fit.product_block, f, kind, start, stop, aux_f) for f in fits]
        done.append(submit(client, finish, tree_sum(client, parts), start, k, finish_aux_f))
    out = Neighbours.empty(n, k)
    for (start, stop), (indices, scores) in zip(blocks, gather_each(client, done), strict=True):
        out.indices[start:stop], out.scores[start:stop] = indices, scores
    return out


def _finish_cosine(dots: sp.csr_matrix, start: int, k: int, aux: tuple[NDArray[np.float64], float]) -> Any:
    norms, shrink = aux
    return topk_rows(cosine_block(sp.csr_matrix(dots), start, norms, shrink), k, start)


def _finish_rp3(walk: sp.csr_matrix, start: int, k: int, scale: NDArray[np.float64]) -> Any:
    walk = sp.csr_matrix(walk)
    walk.data *= scale[walk.indices]
    return topk_rows(walk, k, start)


def _finish_transitions(counts: sp.csr_matrix, start: int, k: int, inn: NDArray[np.float64]) -> Any:
    return topk_rows(transition_cosine(sp.csr_matrix(counts), inn), k, start)


def _ease(gram: sp.csr_matrix, cf: CFConfig) -> Neighbours:
    return ease_topk(ease_from_gram(gram, cf.ease_lambda, cf.ease_dropout, cf.ease_zero_diagonal), cf.k)


def _als(cf: CFConfig, *fits: shard_fit.ShardFit) -> Neighbours:
    from app.recommend.algo_factors import als_neighbours

    return als_neighbours(shard_fit.stacked(*fits), cf.k, cf.als_factors, cf.als_regularization, cf.als_max_items)
