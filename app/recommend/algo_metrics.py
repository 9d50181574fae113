"""Top-n ranking metrics (vectorised over users) and the per-user time-holdout split."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import EventLog


def time_holdout(log: EventLog, test_fraction: float = 0.2) -> NDArray[np.bool_]:
    """Per-user time split: mask bool[n_events], True for the user's most recent interactions.

    Among each user's events with an item, the last round(test_fraction * n_u) by time (at least 1,
    at most n_u - 1) are test; users with fewer than 2 such events are train-only. Ties in time are
    broken by event order, so the split is deterministic.
    """
    has_item = np.flatnonzero(log.item >= 0)
    user = log.user[has_item]
    order = has_item[np.lexsort((has_item, log.ts[has_item], user))]
    user_sorted = log.user[order]
    counts = np.bincount(user_sorted, minlength=log.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(order)) - starts[user_sorted]
    n_u = counts[user_sorted]
    n_test = np.clip(np.rint(test_fraction * n_u), 1, np.maximum(n_u - 1, 0))
    mask = np.zeros(len(log), dtype=bool)
    mask[order] = (n_u >= 2) & (pos >= n_u - n_test)
    return mask


def hits_matrix(top: NDArray[np.integer], relevant: sp.csr_matrix) -> NDArray[np.bool_]:
    """bool[n_users, n]: whether each ranked item is relevant; `top` int[n_users, n], -1 padded."""
    rel = sp.csr_matrix(relevant, dtype=bool)
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1]).reshape(top.shape)
    valid = top >= 0
    hits = np.zeros(top.shape, dtype=bool)
    hits[valid] = np.asarray(rel[rows[valid], top[valid]]).ravel()
    return hits


def precision_at_k(hits: NDArray[np.bool_], k: int) -> NDArray[np.float64]:
    """hits/k per user, float64[n_users] (`hits` from `hits_matrix`, ranked best first)."""
    return np.asarray(hits[:, :k].sum(axis=1) / k, dtype=np.float64)


def recall_at_k(hits: NDArray[np.bool_], n_relevant: NDArray[np.integer], k: int) -> NDArray[np.float64]:
    """hits/|relevant| per user, float64[n_users]; 0 where a user has nothing relevant."""
    return np.asarray(hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1), dtype=np.float64)


def f1_at_k(hits: NDArray[np.bool_], n_relevant: NDArray[np.integer], k: int) -> NDArray[np.float64]:
    """Per-user harmonic mean of precision@k and recall@k, float64[n_users]."""
    p, r = precision_at_k(hits, k), recall_at_k(hits, n_relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)


def ndcg_at_k(hits: NDArray[np.bool_], n_relevant: NDArray[np.integer], k: int) -> NDArray[np.float64]:
    """Binary-relevance NDCG@k per user, float64[n_users].

    DCG = sum_{r=1..k} rel_r / log2(r + 1); IDCG = the same over min(k, |relevant|) relevant items.
    """
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discount[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal_cum[np.minimum(n_relevant, k)]
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


def ranking_metrics(
    top: NDArray[np.integer], relevant: sp.csr_matrix, ks: tuple[int, ...] = (10, 20)
) -> dict[str, float]:
    """Mean precision/recall/F1/NDCG@k over users with at least one relevant item.

    Parameters
    ----------
    top : int[n_users, n] ranked item indices, -1 padded; n >= max(ks).
    relevant : csr [n_users, n_items], non-zero = relevant (held-out) item.

    Returns
    -------
    {"precision@10": ..., "recall@10": ..., "f1@10": ..., "ndcg@10": ..., ..., "users": count}
    """
    n_rel = np.diff(sp.csr_matrix(relevant).indptr)
    users = n_rel > 0
    hits = hits_matrix(top[users], sp.csr_matrix(relevant)[users])
    n_rel = n_rel[users]
    out: dict[str, float] = {}
    for k in ks:
        out[f"precision@{k}"] = float(precision_at_k(hits, k).mean()) if users.any() else 0.0
        out[f"recall@{k}"] = float(recall_at_k(hits, n_rel, k).mean()) if users.any() else 0.0
        out[f"f1@{k}"] = float(f1_at_k(hits, n_rel, k).mean()) if users.any() else 0.0
        out[f"ndcg@{k}"] = float(ndcg_at_k(hits, n_rel, k).mean()) if users.any() else 0.0
    out["users"] = float(users.sum())
    return out
