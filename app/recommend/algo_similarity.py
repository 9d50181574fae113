"""Item-item collaborative filtering: cosine with shrinkage, EASE, RP3beta and ALS, all to `Neighbours`.

Row i of every result lists the items j that history item i votes for, with weight W[i, j]; a user's
CF score for j is sum_i strength(u, i) * W[i, j] over the user's history (see algo_blend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import NDArray

from app.recommend.algo_neighbours import DEFAULT_BLOCK_BYTES, Neighbours, blockwise_topk

CFVariant = Literal["cosine", "ease", "rp3beta", "als"]
CF_VARIANTS: tuple[CFVariant, ...] = ("cosine", "ease", "rp3beta", "als")


@dataclass(frozen=True)
class CFConfig:
    """Item-item CF settings; `variant` and `sequence_weight` are chosen by validation.

    The served CF neighbours are the top-k of (1 - sequence_weight) * variant + sequence_weight *
    sequential co-occurrence (see algo_sequence), each scaled to a comparable range first. Defaults
    (k, ease_lambda, sequence_*) were tuned on a validation split of MovieLens-100K training data;
    k = 200 is worth ~2% NDCG over k = 100 there, at twice the Redis memory per item.
    """

    variant: CFVariant = "ease"
    k: int = 200
    shrink: float = 10.0
    ease_lambda: float = 400.0
    #: EDLAE's emphasis (Steck 2020): item i's ridge is ease_lambda + ease_dropout * (X^T X)[i, i], the
    #: closed form of EASE trained with dropout p = c / (1 + c); 0 is plain EASE.
    ease_dropout: float = 0.0
    #: EASE's zero-diagonal constraint, or EDLAE's full rank (see `ease_weights`).
    ease_zero_diagonal: bool = True
    ease_max_items: int = 20_000
    rp3_alpha: float = 0.6
    rp3_beta: float = 0.5
    sequence_weight: float = 0.85
    sequence_window: int = 30
    sequence_max_gap_days: float = 1.0
    als_factors: int = 64
    als_regularization: float = 10.0
    als_max_items: int = 30_000


def _item_norms(x: sp.csr_matrix) -> NDArray[np.float64]:
    sq = x.multiply(x).sum(axis=0)
    return np.sqrt(np.asarray(sq, dtype=np.float64).ravel())


def cosine_neighbours(
    x: sp.csr_matrix, k: int = 100, shrink: float = 10.0, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> Neighbours:
    """Shrunk cosine item-item similarity, top-k per item.

    sim(a, b) = x_a . x_b / (|x_a| |x_b| + shrink), x_a the column of item a (float[n_users]).
    Shrinkage pulls similarities supported by few users towards 0.

    Parameters
    ----------
    x : csr_matrix float[n_users, n_items], non-negative interaction strengths.

    Returns
    -------
    Neighbours over items, indices int32[n_items, k].
    """
    xt = sp.csr_matrix(x.T, dtype=np.float64)
    xc = sp.csr_matrix(x, dtype=np.float64)
    norms = _item_norms(x)

    def block(start: int, stop: int) -> sp.csr_matrix:
        return cosine_block(sp.csr_matrix(xt[start:stop] @ xc), start, norms, shrink)  # co-occurring pairs only

    return blockwise_topk(x.shape[1], x.shape[1], k, block, block_bytes=block_bytes)


def cosine_block(dots: sp.csr_matrix, start: int, norms: NDArray[np.float64], shrink: float) -> sp.csr_matrix:
    """Rows `start`.. of X^T X -> the same rows of the shrunk cosine, in place (`cosine_neighbours`)."""
    rows = np.repeat(np.arange(start, start + dots.shape[0]), np.diff(dots.indptr))
    dots.data /= norms[rows] * norms[dots.indices] + shrink + 1e-12
    return dots


def ease_weights(
    x: sp.csr_matrix, lam: float = 200.0, dropout: float = 0.0, zero_diagonal: bool = True
) -> NDArray[np.floating]:
    """EASE item-item weight matrix B, float[n_items, n_items] (Steck 2019), diagonal set to 0.

    P = (G + Lambda)^-1 with G = X^T X and item i's ridge Lambda[i, i] = lam + dropout * G[i, i];
    `dropout` > 0 is EDLAE (Steck 2020): popular items, whose self-reconstruction a flat ridge barely
    holds back, are regularised in proportion to their mass (dropout rate p = dropout / (1 + dropout)).
    With `zero_diagonal`, B = I - P diagMat(1 / diag(P)), i.e. B[i, j] = -P[i, j] / P[j, j] (EASE's
    constraint); without it, B = I - P Lambda (EDLAE's full rank), B[i, j] = -P[i, j] Lambda[j, j]. The
    diagonal only scores an item for those who have it, which serving excludes, so it is dropped.
    Dense: memory ~ 4 n_items^2 bytes (float32 above 1024 items, float64 below).
    """
    return ease_from_gram(x.T @ x, lam, dropout, zero_diagonal)


def ease_from_gram(
    gram_sparse: sp.spmatrix, lam: float, dropout: float = 0.0, zero_diagonal: bool = True
) -> NDArray[np.floating]:
    """`ease_weights` from X^T X (which a distributed rebuild sums over user shards)."""
    n = gram_sparse.shape[0]
    dtype = np.float64 if n <= 1024 else np.float32  # float32 halves time and memory; ranking-safe
    gram: NDArray[np.floating] = np.asarray(gram_sparse.toarray(), dtype=dtype)
    penalty = gram.diagonal() * dropout + lam
    gram.flat[:: n + 1] += penalty
    p = np.asarray(scipy.linalg.inv(gram, overwrite_a=True, check_finite=False))
    if zero_diagonal:
        p /= -np.diag(p)[None, :]
    else:
        p *= -penalty[None, :]
    p[np.diag_indices(n)] = 0.0
    return p


def ease_neighbours(
    x: sp.csr_matrix, k: int = 100, lam: float = 200.0, max_items: int = 20_000,
    block_bytes: int = DEFAULT_BLOCK_BYTES, dropout: float = 0.0, zero_diagonal: bool = True,
) -> Neighbours:
    """Top-k of each row of the EASE weight matrix by magnitude (negatives kept); see `ease_weights`.

    Raises ValueError above `max_items` (the dense inverse would not fit); validation then skips EASE.
    """
    if x.shape[1] > max_items:
        raise ValueError(f"EASE needs a dense {x.shape[1]}^2 matrix; limit is {max_items} items")
    return ease_topk(ease_weights(x, lam, dropout, zero_diagonal), k, block_bytes)


def ease_topk(b: NDArray[np.floating], k: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Neighbours:
    return blockwise_topk(
        b.shape[0], b.shape[1], k, lambda s, e: b[s:e].copy(), block_bytes=block_bytes, signed=True
    )


def rp3beta_neighbours(
    x: sp.csr_matrix, k: int = 100, alpha: float = 1.0, beta: float = 0.4,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Neighbours:
    """RP3beta (Paudel et al. 2017): 3-step random-walk item->user->item, divided by popularity^beta.

    W[i, j] = sum_u P(u | i)^alpha P(j | u)^alpha / deg(j)^beta, where P(u | i) normalises item i's
    column over users and P(j | u) normalises user u's row over items; deg(j) = number of users of j.

    Parameters
    ----------
    x : csr_matrix float[n_users, n_items], non-negative.

    Returns
    -------
    Neighbours over items, indices int32[n_items, k].
    """
    x64 = sp.csr_matrix(x, dtype=np.float64)
    col_sum = np.asarray(x64.sum(axis=0)).ravel()
    p_iu, p_ui = rp3_walks(x64, col_sum, alpha)
    degree = np.diff(sp.csc_matrix(x64).indptr).astype(np.float64)
    scale = rp3_scale(degree, beta)

    def block(start: int, stop: int) -> sp.csr_matrix:
        walk = sp.csr_matrix(p_iu[start:stop] @ p_ui)
        walk.data *= scale[walk.indices]
        return walk

    return blockwise_topk(x.shape[1], x.shape[1], k, block, block_bytes=block_bytes)


def rp3_walks(
    x64: sp.csr_matrix, col_sum: NDArray[np.float64], alpha: float
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(P(u | i)^alpha as items x users, P(j | u)^alpha as users x items) of `rp3beta_neighbours`; the
    users' rows may be a shard of the shop's, `col_sum` is every user's column sum."""
    row_sum = np.asarray(x64.sum(axis=1)).ravel()
    p_ui = sp.diags(1.0 / np.maximum(row_sum, 1e-12)) @ x64  # users -> items
    p_iu = sp.csr_matrix((x64 @ sp.diags(1.0 / np.maximum(col_sum, 1e-12))).T)  # items -> users
    if alpha != 1.0:
        p_ui = p_ui.power(alpha)
        p_iu = p_iu.power(alpha)
    return sp.csr_matrix(p_iu), sp.csr_matrix(p_ui)


def rp3_scale(degree: NDArray[np.float64], beta: float) -> NDArray[np.float64]:
    return 1.0 / np.maximum(degree, 1.0) ** beta


def cf_neighbours(x: sp.csr_matrix, config: CFConfig) -> Neighbours:
    """Item-item neighbours of the configured variant; float[n_users, n_items] -> Neighbours."""
    if config.variant == "cosine":
        return cosine_neighbours(x, config.k, config.shrink)
    if config.variant == "ease":
        return ease_neighbours(x, config.k, config.ease_lambda, config.ease_max_items, dropout=config.ease_dropout,
                               zero_diagonal=config.ease_zero_diagonal)
    if config.variant == "rp3beta":
        return rp3beta_neighbours(x, config.k, config.rp3_alpha, config.rp3_beta)
    if config.variant == "als":
        from app.recommend.algo_factors import als_neighbours  # implicit loads only when ALS is tried

        return als_neighbours(x, config.k, config.als_factors, config.als_regularization, config.als_max_items)
    raise ValueError(f"unknown CF variant {config.variant!r}")
