"""The quality benchmark's peers, each tuned on a validation split carved out of training the same way.

Popularity (all-time counts), implicit's item-kNN and ALS, and EASE on the binary training matrix: what
a shop would get from Gorse-style item-kNN, from a factor model or from the strongest simple
linear model. Every peer recommends the top 20 unseen items of each scored user.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from app.recommend.algo_blend import top_n
from bench.datasets import Split

# implicit converts a matrix of its own to CSR inside recommend() and warns about it on every call
warnings.filterwarnings("ignore", message="Method expects CSR input")

EASE_MAX_ITEMS = 20_000


def _masked(split: Split, scores: np.ndarray) -> np.ndarray:
    ex = sp.coo_matrix(split.seen)
    scores[ex.row, ex.col] = -np.inf
    return scores


def popularity(split: Split, _: Any = None) -> np.ndarray:
    counts = np.asarray(split.binary.sum(axis=0), dtype=np.float64).ravel()
    return top_n(_masked(split, np.tile(counts, (len(split.users), 1))), 20)


def itemknn(split: Split, k: int) -> np.ndarray:
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=k, num_threads=1)
    model.fit(split.binary, show_progress=False)
    ids, _ = model.recommend(split.users, split.binary[split.users], N=20, filter_already_liked_items=True)
    return np.asarray(ids, dtype=np.int32)


def als(split: Split, params: tuple[float, float]) -> np.ndarray:
    from implicit.cpu.als import AlternatingLeastSquares

    reg, alpha = params
    model = AlternatingLeastSquares(factors=64, regularization=reg, alpha=alpha, iterations=15,
                                    num_threads=1, random_state=42)
    model.fit(split.binary, show_progress=False)
    ids, _ = model.recommend(split.users, split.binary[split.users], N=20, filter_already_liked_items=True)
    return np.asarray(ids, dtype=np.int32)


def ease(split: Split, lam: float) -> np.ndarray:
    x = split.binary.astype(np.float32)
    g = np.asarray((x.T @ x).toarray(), dtype=np.float32)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    out = np.empty((len(split.users), 20), dtype=np.int32)
    for s in range(0, len(split.users), 1024):  # bounded blocks of users x items
        rows = split.users[s:s + 1024]
        scores = np.asarray(x[rows] @ b, dtype=np.float64)
        ex = sp.coo_matrix(split.seen[s:s + 1024])
        scores[ex.row, ex.col] = -np.inf
        out[s:s + 1024] = top_n(scores, 20)
    return out


Peer = Callable[[Split, Any], np.ndarray]
PEERS: dict[str, tuple[str, list[Any], Peer]] = {
    "popularity (all-time)": ("", [None], popularity),
    "implicit item-kNN": ("K", [20, 50, 100, 200, 400], itemknn),
    "implicit ALS 64f": ("reg,alpha", list(itertools.product([0.1, 1.0, 10.0, 100.0], [1.0, 5.0, 20.0])), als),
    "EASE": ("lambda", [10, 50, 200, 800, 3200], ease),
}


def applicable(name: str, split: Split) -> bool:
    return name != "EASE" or split.train.n_items <= EASE_MAX_ITEMS
