"""Invariants every `Neighbours` producer keeps, on random inputs (hypothesis)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from app.eventlog import EVENT_TYPES, EventLog
from app.recommend.algo_content import content_neighbours, fit_content
from app.recommend.algo_neighbours import Neighbours, merge_neighbours
from app.recommend.algo_sequence import sequence_neighbours
from app.recommend.algo_similarity import cosine_neighbours, ease_neighbours, rp3beta_neighbours
from app.recommend.algo_users import pearson_user_neighbours


def check(nb: Neighbours, n: int, k: int, positive: bool = True) -> None:
    assert nb.indices.shape == (n, k) and nb.scores.shape == (n, k)
    assert nb.indices.dtype == np.int32 and nb.scores.dtype == np.float32
    assert np.all(np.isfinite(nb.scores))
    valid = nb.indices >= 0
    assert np.all(nb.indices < n)
    assert not np.any(nb.indices == np.arange(n)[:, None])            # never itself
    assert np.all(np.diff(valid.astype(np.int8), axis=1) <= 0)        # -1 padding only at the end
    assert np.all(nb.scores[~valid] == 0) and np.all(nb.scores[valid] != 0)
    if positive:
        assert np.all(nb.scores[valid] > 0)
    for row, ok in zip(nb.scores, valid, strict=True):
        assert np.all(np.diff(row[ok]) <= 0)                          # sorted descending
    for row, ok in zip(nb.indices, valid, strict=True):
        assert len(set(row[ok].tolist())) == int(ok.sum())            # no duplicates


matrices = st.builds(
    lambda seed, n_users, n_items, density: _matrix(seed, n_users, n_items, density),
    st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 30), st.floats(0.0, 0.8),
)


def _matrix(seed: int, n_users: int, n_items: int, density: float) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    x = sp.random(n_users, n_items, density=density, format="csr", random_state=seed, dtype=np.float32)
    x.data = (rng.random(x.nnz) * 4 + 0.1).astype(np.float32)
    return x


@settings(max_examples=40, deadline=None)
@given(x=matrices, k=st.integers(1, 8), block=st.sampled_from([1, 10**9]))
def test_item_item_variants(x: sp.csr_matrix, k: int, block: int) -> None:
    n = x.shape[1]
    check(cosine_neighbours(x, k, shrink=1.0, block_bytes=block), n, k)
    check(rp3beta_neighbours(x, k, block_bytes=block), n, k)
    check(ease_neighbours(x, k, lam=1.0, block_bytes=block), n, k, positive=False)


@settings(max_examples=40, deadline=None)
@given(x=matrices, k=st.integers(1, 8), gamma=st.sampled_from([1.0, 50.0]))
def test_pearson(x: sp.csr_matrix, k: int, gamma: float) -> None:
    nb = pearson_user_neighbours(x, k, gamma)
    check(nb, x.shape[0], k)
    assert np.all(nb.scores <= 1.0 + 1e-6)


@settings(max_examples=30, deadline=None)
@given(x=matrices, y=matrices, k=st.integers(1, 6), w=st.floats(0, 1))
def test_merge(x: sp.csr_matrix, y: sp.csr_matrix, k: int, w: float) -> None:
    n = min(x.shape[1], y.shape[1])
    a = ease_neighbours(x[:, :n], k, lam=1.0)
    b = cosine_neighbours(y[:, :n], k)
    check(merge_neighbours(a, b, w, k), n, k, positive=False)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 200), k=st.integers(1, 6), window=st.integers(1, 5))
def test_sequence(seed: int, n: int, k: int, window: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = 12
    log = EventLog.from_records(
        [f"u{u}" for u in rng.integers(0, 8, n)],
        [f"i{i}" for i in rng.integers(0, n_items, n)],
        [EVENT_TYPES[t] for t in rng.integers(0, len(EVENT_TYPES), n)],
        (rng.integers(0, 3, n) * 3600.0).tolist(),
        rng.integers(1, 6, n).astype(float).tolist(),
        item_universe=[f"i{i}" for i in range(n_items)],
    )
    check(sequence_neighbours(log, k, window, max_gap_days=1.0), n_items, k)


VOCAB = ["red", "blue", "shoe", "cat_shoes", "brand_acme", "tea", "cup"]
words = st.lists(st.sampled_from(VOCAB), max_size=6)


@settings(max_examples=30, deadline=None)
@given(docs=st.lists(words.map(" ".join), min_size=1, max_size=15), k=st.integers(1, 5))
def test_content(docs: list[str], k: int) -> None:
    check(content_neighbours(fit_content(docs, n_features=2**12), k), len(docs), k)
