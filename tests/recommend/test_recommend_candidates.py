"""Sparse candidate scoring (validation at scale) against the dense `combine` + `top_n` path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from app.recommend import algo_candidates
from app.recommend.algo_blend import HybridConfig, combine, propagate, sources, top_n, top_popular
from app.recommend.algo_candidates import Candidates, popular_top_n

# 2 users x 5 items; user 0 has seen item 0, user 1 items 1 and 4
HISTORY = sp.csr_matrix(np.array([[1.0, 0, 0, 0, 0], [0, 2.0, 0, 0, 1.0]]))
SEEN = sp.csr_matrix(HISTORY > 0)
CF = sp.csr_matrix(np.array([[0, 0.5, 0.2, 0, 0], [0, 0, 0.3, 0.1, 0], [0] * 5, [0] * 5, [0, 0, 0, 0.4, 0]]))
CONTENT = sp.csr_matrix(np.array([[0, 0, 0, 0.9, 0], [0] * 5, [0] * 5, [0] * 5, [0.6, 0, 0, 0, 0]]))
EVIDENCE = np.array([3, 2, 1, 0, 5], dtype=np.float32)
POP = np.array([5, 1, 0, 2, 4], dtype=np.float32)


def test_candidates_by_hand() -> None:
    cands = Candidates.build(HISTORY @ CF, HISTORY @ CONTENT, np.array([0, 3]), SEEN)
    # user 0 reaches 1 (cf .5), 2 (cf .2), 3 (content .9) plus popular 0 (seen: dropped) and 3
    assert cands.items[: cands.indptr[1]].tolist() == [1, 2, 3]
    np.testing.assert_allclose(cands.cf[:3], [1.0, 0.4, 0.0])
    np.testing.assert_allclose(cands.content[:3], [0.0, 0.0, 1.0])
    # user 1: cf 2 = 2*.3 = .6, 3 = 2*.1 + .4 = .6 ; content 0 = .6 ; popular 0, 3
    assert cands.items[cands.indptr[1] :].tolist() == [0, 2, 3]
    top = cands.top_n(cands.totals(EVIDENCE, POP, HybridConfig(alpha=1.0, evidence_c=0.0)), 2)
    assert top.tolist() == [[1, 2], [2, 3]]  # user 1: a tie at 1.0, the lower item first


def _assert_same_ranking(got: np.ndarray, history: sp.csr_matrix, cf: sp.csr_matrix | None,
                         content: sp.csr_matrix | None, seen: sp.csr_matrix, config: HybridConfig) -> None:
    """got lists the dense path's top-n: the same dense totals in the same order (which of several
    tied items fills the last places is arbitrary in both paths)."""
    zero = np.zeros(history.shape)
    cf_raw = zero if cf is None else propagate(history, cf)
    ct_raw = zero if content is None else propagate(history, content)
    total = combine(sources(cf_raw, ct_raw, seen), EVIDENCE_R, POP_R, config)
    want = top_n(total, got.shape[1])
    assert ((got >= 0) == (want >= 0)).all()
    rows = np.arange(len(got))[:, None]
    picked = np.where(got >= 0, total[rows, np.maximum(got, 0)], 0)
    np.testing.assert_array_equal(picked, np.where(want >= 0, total[rows, np.maximum(want, 0)], 0))
    assert len({(r, i) for r, i in zip(*np.nonzero(got >= 0), strict=True)}) == (got >= 0).sum()


RNG = np.random.default_rng(7)
N_USERS, N_ITEMS = 40, 30
EVIDENCE_R = RNG.integers(0, 6, N_ITEMS).astype(np.float32)
POP_R = np.where(RNG.random(N_ITEMS) < 0.3, 0.0, RNG.random(N_ITEMS)).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("dense_share", [2.0, -1.0])  # candidates gathered sparse, then from dense blocks
def test_sparse_scoring_equals_the_dense_path(
    seed: int, signed: bool, dense_share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(algo_candidates, "DENSE_SHARE", dense_share)
    history = sp.random(N_USERS, N_ITEMS, density=0.1, random_state=seed, format="csr", dtype=np.float64)
    seen = sp.csr_matrix(history > 0)
    cf = sp.random(N_ITEMS, N_ITEMS, density=0.15, random_state=seed + 100, format="csr")
    if signed:  # EASE-like negative weights
        cf.data -= 0.3
    content = sp.random(N_ITEMS, N_ITEMS, density=0.1, random_state=seed + 200, format="csr")
    for s_cf, s_ct in ((cf, content), (cf, None), (None, content)):
        for config in (HybridConfig(alpha=0.7, evidence_c=1.0, n_popular=5),
                       HybridConfig(alpha=0.3, evidence_c=0.0, pop_weight=0.2, n_popular=8)):
            zero = sp.csr_matrix((N_USERS, N_ITEMS))
            cands = Candidates.build(zero if s_cf is None else history @ s_cf,
                                     zero if s_ct is None else history @ s_ct,
                                     top_popular(POP_R, config.n_popular), seen)
            got = cands.top_n(cands.totals(EVIDENCE_R, POP_R, config), 10)
            _assert_same_ranking(got, history, s_cf, s_ct, seen, config)


@pytest.mark.parametrize("config", [HybridConfig(pop_weight=1.0, n_popular=N_ITEMS),
                                    HybridConfig(pop_weight=0.0, n_popular=12)])
def test_popularity_only_ranking_equals_the_dense_path(config: HybridConfig) -> None:
    history = sp.random(N_USERS, N_ITEMS, density=0.3, random_state=3, format="csr")
    seen = sp.csr_matrix(history > 0)
    _assert_same_ranking(popular_top_n(POP_R, config, seen, 10), history, None, None, seen, config)
