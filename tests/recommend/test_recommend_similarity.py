"""Item-item CF, sequence neighbours and user-user Pearson against answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from app.eventlog import EventLog
from app.recommend.algo_neighbours import Neighbours, merge_neighbours, topk_dense
from app.recommend.algo_packing import packing_runs
from app.recommend.algo_sequence import sequence_neighbours, transition_counts
from app.recommend.algo_similarity import (
    CFConfig,
    cf_neighbours,
    cosine_neighbours,
    ease_neighbours,
    ease_weights,
    rp3beta_neighbours,
)
from app.recommend.algo_users import pearson_user_neighbours

# 3 users x 4 items (a, b, c, d). Columns: a=(1,1,0) b=(1,0,1) c=(0,1,1) d=(0,0,1)
X = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]], dtype=np.float32))


def _row(nb: Neighbours, i: int) -> dict[int, float]:
    keep = nb.indices[i] >= 0
    return dict(zip(nb.indices[i][keep].tolist(), nb.scores[i][keep].tolist(), strict=True))


def test_cosine_with_shrinkage_by_hand() -> None:
    nb = cosine_neighbours(X, k=3, shrink=1.0)
    # |a|=|b|=|c|=sqrt2, |d|=1; a.b = a.c = b.c = b.d = c.d = 1, a.d = 0
    third, root = 1 / 3, 1 / (math.sqrt(2) + 1)
    assert _row(nb, 0) == pytest.approx({1: third, 2: third})          # d: dot 0 -> dropped
    assert _row(nb, 1) == pytest.approx({3: root, 0: third, 2: third})
    assert _row(nb, 3) == pytest.approx({1: root, 2: root})
    assert nb.indices[1, 0] == 3  # the strongest first
    unshrunk = cosine_neighbours(X, k=3, shrink=0.0)
    assert _row(unshrunk, 0) == pytest.approx({1: 0.5, 2: 0.5})


def test_cosine_blocks_do_not_change_the_answer() -> None:
    rng = np.random.default_rng(0)
    x = sp.random(30, 25, density=0.3, random_state=1, format="csr", dtype=np.float32)
    x.data = rng.random(x.nnz).astype(np.float32) + 0.1
    whole = cosine_neighbours(x, k=5)
    tiny = cosine_neighbours(x, k=5, block_bytes=1)  # one row per block
    np.testing.assert_allclose(whole.scores, tiny.scores, rtol=1e-6)


def test_ease_matches_closed_form() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]],
                               dtype=np.float64))
    lam = 0.5
    g = x.toarray().T @ x.toarray() + lam * np.eye(4)
    p = np.linalg.inv(g)
    expected = np.eye(4) - p / np.diag(p)[None, :]  # B = I - P diagMat(1/diag(P))
    b = ease_weights(x, lam)
    np.testing.assert_allclose(b, expected, atol=1e-10)
    assert np.allclose(np.diag(b), 0.0)
    nb = ease_neighbours(x, k=3, lam=lam)
    for i in range(4):  # all three other items kept, negatives included, sorted descending
        assert _row(nb, i) == pytest.approx({j: expected[i, j] for j in range(4) if j != i})
        assert np.all(np.diff(nb.scores[i]) <= 0)
    assert (nb.scores < 0).any()


@pytest.mark.parametrize("dropout", [1 / 3, 3.0])
def test_ease_with_dropout_emphasis_is_a_ridge_regression_per_item(dropout: float) -> None:
    """EDLAE: column j of B regresses item j on the others, item i's coefficient penalised by
    lam + dropout * G[i, i]; solved here column by column, not through the inverse's identity."""
    rng = np.random.default_rng(3)
    x = (rng.random((40, 6)) < 0.4).astype(np.float64)
    x[:, 0] = 1.0  # one item everybody has: the emphasis holds it back the most
    lam = 2.0
    g = x.T @ x
    penalty = lam + dropout * np.diag(g)
    b = ease_weights(sp.csr_matrix(x), lam, dropout)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        coef = np.linalg.solve(g[np.ix_(others, others)] + np.diag(penalty[others]), g[others, j])
        np.testing.assert_allclose(b[others, j], coef, atol=1e-10)
        assert b[j, j] == 0.0
    plain = ease_weights(sp.csr_matrix(x), lam)
    assert np.abs(b[0]).sum() < np.abs(plain[0]).sum()  # the popular item votes with less weight
    nb = cf_neighbours(sp.csr_matrix(x), CFConfig(variant="ease", k=5, ease_lambda=lam, ease_dropout=dropout))
    for i in range(6):
        assert _row(nb, i) == pytest.approx({j: b[i, j] for j in range(6) if j != i})


def test_ease_full_rank_is_the_unconstrained_regression_with_each_column_rescaled() -> None:
    """Without the zero-diagonal constraint, B = argmin |X - XB|^2 + |Lambda^1/2 B|^2 = (G + Lambda)^-1 G
    (EDLAE's full rank). Off the diagonal, each column is the constrained one times a constant."""
    rng = np.random.default_rng(4)
    x = (rng.random((50, 7)) < 0.35).astype(np.float64)
    lam, dropout = 3.0, 1.0
    g = x.T @ x
    full = ease_weights(sp.csr_matrix(x), lam, dropout, zero_diagonal=False)
    expected = np.linalg.solve(g + np.diag(lam + dropout * np.diag(g)), g)
    off = ~np.eye(7, dtype=bool)
    np.testing.assert_allclose(full[off], expected[off], atol=1e-10)
    assert np.all(np.diag(full) == 0.0)
    constrained = ease_weights(sp.csr_matrix(x), lam, dropout)
    ratio = np.where(off, full / np.where(off, constrained, 1.0), np.nan)
    for j in range(7):
        column = ratio[:, j][off[:, j]]
        np.testing.assert_allclose(column, column[0], rtol=1e-8)
    assert np.ptp(np.nanmax(ratio, axis=0)) > 0.01  # the scale differs by item: rankings can change


def test_ease_refuses_huge_catalogs() -> None:
    with pytest.raises(ValueError, match="EASE"):
        ease_neighbours(X, k=2, max_items=3)


def test_rp3beta_matches_dense_formula() -> None:
    alpha, beta = 0.8, 0.4
    d = X.toarray().astype(np.float64)
    p_ui = (d / d.sum(axis=1, keepdims=True)) ** alpha
    p_iu = (d / d.sum(axis=0, keepdims=True)).T ** alpha
    w = (p_iu @ p_ui) / (d > 0).sum(axis=0)[None, :] ** beta
    nb = rp3beta_neighbours(X, k=3, alpha=alpha, beta=beta)
    for i in range(4):
        assert _row(nb, i) == pytest.approx({j: w[i, j] for j in range(4) if j != i and w[i, j] > 0})


def test_cf_neighbours_dispatch() -> None:
    for variant in ("cosine", "ease", "rp3beta"):
        nb = cf_neighbours(X, CFConfig(variant=variant, k=2))  # type: ignore[arg-type]
        assert nb.indices.shape == (4, 2)
    with pytest.raises(ValueError):
        cf_neighbours(X, CFConfig(variant="svd", k=2))  # type: ignore[arg-type]


def test_topk_dense_signed_and_padding() -> None:
    block = np.array([[0.0, 0.5, -0.9, 0.1], [0.0, 0.0, 0.0, 0.0]])
    idx, sc = topk_dense(block.copy(), 2, np.array([0, 1]), signed=True)
    np.testing.assert_array_equal(idx, [[1, 2], [-1, -1]])
    np.testing.assert_allclose(sc, [[0.5, -0.9], [0, 0]])
    idx, sc = topk_dense(block.copy(), 3, np.array([0, 1]))
    np.testing.assert_array_equal(idx, [[1, 3, -1], [-1, -1, -1]])


@pytest.mark.parametrize("signed", [False, True], ids=["positive", "signed"])
def test_a_sparse_blocks_top_k_is_the_dense_top_k_of_its_rows(signed: bool) -> None:
    """Rows from empty to catalogue-wide, packed by width: the same neighbours and scores, in the same
    order, as the dense top-k of the same rows; non-finite scores and each row's own item dropped."""
    from app.recommend.algo_neighbours import topk_rows

    rng = np.random.default_rng(7)
    n, b, start, k = 600, 120, 40, 8
    widths = np.r_[0, 1, 3, k, k + 1, rng.integers(0, 40, b - 7), 300, n]  # one row as wide as the catalogue
    rows = np.repeat(np.arange(b), widths)
    cols = np.concatenate([rng.choice(n, w, replace=False) for w in widths])
    scores = (rng.permutation(len(rows)) + 1.0) * rng.choice([-1.0, 1.0], len(rows))  # distinct magnitudes
    scores[rng.choice(len(rows), 5, replace=False)] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    block = sp.csr_matrix((scores, (rows, cols)), shape=(b, n))
    assert (~np.isfinite(block.data)).sum() == 5

    got = topk_rows(block, k, start, signed=signed)
    want = topk_dense(block.toarray(), k, np.arange(start, start + b), signed=signed)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert (got[0][b - 1] >= 0).all() and (got[0][0] == -1).all()  # the widest row full, the empty one empty


def test_tied_neighbours_come_in_column_order_whatever_order_a_product_stored_them_in() -> None:
    """A sparse product stores a row's entries unsorted; ties still rank by column, as the dense path does,
    so the same row summed in another order (a Dask shard's) lists its neighbours in the same order."""
    from app.recommend.algo_neighbours import topk_rows

    row = sp.csr_matrix((np.array([1.0, 1.0, 1.0, 2.0]), np.array([9, 5, 1, 3]), np.array([0, 4])), shape=(1, 12))
    assert not row.has_sorted_indices
    idx, sc = topk_rows(row, 3, 0)
    np.testing.assert_array_equal(idx, [[3, 1, 5]])
    np.testing.assert_array_equal(sc, [[2.0, 1.0, 1.0]])
    np.testing.assert_array_equal(idx, topk_dense(row.toarray(), 3, np.array([0]))[0])


def _seq_log() -> EventLog:
    # u0: a b c (one minute apart), u1: a b, u2: a ... 10 days later ... c (gap too long)
    rows = [("u0", "a", 0.0), ("u0", "b", 60.0), ("u0", "c", 120.0), ("u1", "a", 0.0), ("u1", "b", 5.0),
            ("u1", "b", 6.0), ("u2", "a", 0.0), ("u2", "c", 10 * 86_400.0)]
    users, items, ts = zip(*rows, strict=True)
    return EventLog.from_records(list(users), list(items), ["view"] * len(rows), list(ts))


def test_transition_counts_by_hand() -> None:
    t = transition_counts(_seq_log(), window=2, max_gap_days=1.0).toarray()
    # a->b twice (u0, u1; u1's b b collapses to one b), a->c once (u0, offset 2), b->c once
    np.testing.assert_array_equal(t, [[0, 2, 1], [0, 0, 1], [0, 0, 0]])
    assert transition_counts(_seq_log(), window=1, max_gap_days=1.0).toarray()[0, 2] == 0


def test_sequence_neighbours_cosine_of_transitions() -> None:
    nb = sequence_neighbours(_seq_log(), k=2, window=2, max_gap_days=1.0)
    # out(a)=3, out(b)=1; in(b)=2, in(c)=2: sim(a,b)=2/sqrt(6), sim(a,c)=1/sqrt(6), sim(b,c)=1/sqrt(2)
    assert _row(nb, 0) == pytest.approx({1: 2 / math.sqrt(6), 2: 1 / math.sqrt(6)})
    assert _row(nb, 1) == pytest.approx({2: 1 / math.sqrt(2)})
    assert _row(nb, 2) == {}


def test_merge_neighbours_scales_then_blends() -> None:
    a = Neighbours(np.array([[1, -1], [0, -1]], np.int32), np.array([[2.0, 0], [4.0, 0]], np.float32))
    b = Neighbours(np.array([[1, -1], [-1, -1]], np.int32), np.array([[0.5, 0], [0, 0]], np.float32))
    m = merge_neighbours(a, b, 0.5, k=2)
    # scale(a) = mean(2, 4) = 3, scale(b) = 0.5: row 0 -> 0.5*2/3 + 0.5*1, row 1 -> 0.5*4/3
    assert _row(m, 0) == pytest.approx({1: 1 / 3 + 0.5})
    assert _row(m, 1) == pytest.approx({0: 2 / 3})
    assert merge_neighbours(a, b, 0.0, 2) is a


def test_pearson_by_hand() -> None:
    # u0 = (5, 1, 4), u1 = (4, -, 5), u2 = (5, 2, 3); centres are each user's mean over all its ratings
    rows, cols = np.array([0, 0, 0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 0, 2, 0, 1, 2])
    r = sp.csr_matrix((np.array([5, 1, 4, 4, 5, 5, 2, 3], dtype=np.float32), (rows, cols)), shape=(3, 3))
    # centred: u0 = (5/3, -7/3, 2/3), u2 = (5/3, -4/3, -1/3): num 51/9, sums of squares 78/9 and 42/9
    expected = 51 / math.sqrt(78 * 42)
    nb = pearson_user_neighbours(r, k=2, gamma=2)
    assert _row(nb, 0) == pytest.approx({2: expected})
    assert _row(nb, 2) == pytest.approx({0: expected})
    # u1 correlates negatively with both over its co-rated items {0, 2}: -0.5/.. and -1/..
    assert _row(nb, 1) == {}
    # significance weighting: 3 co-rated items, gamma 6 -> x 0.5
    assert _row(pearson_user_neighbours(r, k=2, gamma=6), 0) == pytest.approx({2: expected / 2})


def test_pearson_uses_only_co_rated_items() -> None:
    # u0 and u1 agree on items 0, 1; u1's extra item 2 must not enter the u0-u1 sums
    r = sp.csr_matrix(np.array([[5, 1, 0], [4, 2, 5]], dtype=np.float32))
    m0, m1 = 3.0, 11 / 3
    c0, c1 = np.array([2.0, -2.0]), np.array([4 - m1, 2 - m1])
    expected = (c0 @ c1) / math.sqrt((c0 @ c0) * (c1 @ c1)) * (2 / 50)
    nb = pearson_user_neighbours(r, k=1)
    assert nb.scores[0, 0] == pytest.approx(expected) and nb.indices[0, 0] == 1
    assert c0 @ np.ones(2) == 0 and m0 == np.mean([5, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_sparse_and_dense_paths_agree(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.recommend.algo_users as users

    rng = np.random.default_rng(seed)
    r = sp.random(40, 30, density=0.15, format="csr", random_state=seed, dtype=np.float32)
    r.data = rng.integers(1, 6, r.nnz).astype(np.float32)
    monkeypatch.setattr(users, "DENSE_PAIR_FRACTION", 2.0)  # never dense
    sparse = pearson_user_neighbours(r, k=5, gamma=3)
    monkeypatch.setattr(users, "DENSE_PAIR_FRACTION", -1.0)  # always dense
    dense = pearson_user_neighbours(r, k=5, gamma=3)
    np.testing.assert_allclose(sparse.scores, dense.scores, rtol=1e-6)
    assert (sparse.indices >= 0).sum() > 20


@pytest.mark.parametrize("seed", [3, 4])
def test_pearson_equals_the_pairwise_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((12, 8)) < 0.5, rng.integers(1, 6, (12, 8)), 0).astype(np.float64)
    nb = pearson_user_neighbours(sp.csr_matrix(dense), k=11, gamma=3)
    rated = dense > 0
    means = dense.sum(axis=1) / np.maximum(rated.sum(axis=1), 1)
    for u in range(12):
        want = {}
        for v in range(12):
            co = rated[u] & rated[v]
            if v == u or not co.any():
                continue
            a, b = dense[u, co] - means[u], dense[v, co] - means[v]
            denom = math.sqrt((a @ a) * (b @ b))
            score = (a @ b) / denom * min(co.sum(), 3) / 3 if denom > 0 else 0.0
            if score > 1e-6:
                want[v] = score
        got = {v: s for v, s in _row(nb, u).items() if s > 1e-6}
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_a_sparse_block_of_many_rows_and_one_wide_row_is_packed_in_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block sized by its entries (the distributed rebuild's) can hold many sparse rows and one row as
    wide as the catalogue; packed in runs of similar width that fit the budget, its top-k is the one of
    the block whole."""
    from app.recommend import algo_neighbours
    from app.recommend.algo_neighbours import topk_dense, topk_rows

    rng = np.random.default_rng(3)
    n, b, start, k = 400, 300, 50, 2
    block = sp.random(b, n, density=0.01, format="csr", random_state=4, dtype=np.float64)
    block.data[:] = rng.permutation(block.nnz) + 1.0  # distinct scores: one right answer per row
    wide = sp.csr_matrix((np.arange(1.0, n + 1) + block.nnz, (np.full(n, 7), np.arange(n))), shape=(b, n))
    block = sp.csr_matrix(block + wide)
    whole = topk_dense(block.toarray(), k, np.arange(start, start + b))
    # 20 packed rows at a time for the narrow rows; the wide one alone in its run
    monkeypatch.setattr(algo_neighbours, "DEFAULT_BLOCK_BYTES", 8 * 20 * int(np.diff(block.indptr)[8:].max()))
    budget, counts = algo_neighbours.DEFAULT_BLOCK_BYTES // 8, np.diff(block.indptr)
    runs = packing_runs(counts, k, budget)
    assert any(list(run) == [7] for run in runs) and len(runs) > 10
    assert sorted(r for run in runs for r in run) == list(range(b))  # every row once
    for run in runs:
        widths = counts[run]
        assert len(run) == 1 or len(run) * widths.max() <= budget
        assert widths.max() <= max(k, 2 * widths.min())  # similar widths: padding under half a run
    in_runs = topk_rows(block, k, start)
    assert np.array_equal(in_runs[0], whole[0]) and np.array_equal(in_runs[1], whole[1])
    assert (whole[0][7] >= 0).all() and start + 7 not in whole[0][7]  # the wide row is full, itself excluded
