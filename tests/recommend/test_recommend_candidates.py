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
    """got is the dense path's top-n, item for item (both break ties by the lower item, at the n-th
    place too), and the dense path's totals rank it."""
    zero = np.zeros(history.shape)
    cf_raw = zero if cf is None else propagate(history, cf)
    ct_raw = zero if content is None else propagate(history, content)
    total = combine(sources(cf_raw, ct_raw, seen), EVIDENCE_R, POP_R, config)
    want = top_n(total, got.shape[1])
    np.testing.assert_array_equal(got, want)
    for row, items in zip(total, want, strict=True):  # the reference itself: a stable sort of the row
        ranked = np.lexsort((np.arange(len(row)), -row))[: len(items)]
        np.testing.assert_array_equal(items, np.where(np.isneginf(row[ranked]), -1, ranked))


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


def test_users_packed_in_many_blocks_rank_as_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidate counts from 0 to the whole catalogue, packed a few users at a time: blocks group users
    of similar counts, fit the cell budget, hold every user with candidates once, and rank as the dense
    path does."""
    monkeypatch.setattr(algo_candidates, "_NARROW_ROW", 4)
    monkeypatch.setattr(algo_candidates, "_PACKED_CELLS", 120)
    rng = np.random.default_rng(11)
    density = rng.choice([0.0, 0.03, 0.1, 0.3, 1.0], N_USERS)  # some users see everything: no candidates
    history = sp.csr_matrix((rng.random((N_USERS, N_ITEMS)) < density[:, None]) * rng.random((N_USERS, N_ITEMS)))
    seen = sp.csr_matrix(history > 0)
    cf = sp.random(N_ITEMS, N_ITEMS, density=0.15, random_state=5, format="csr")
    config = HybridConfig(alpha=1.0, evidence_c=0.0, n_popular=3)
    cands = Candidates.build(history @ cf, sp.csr_matrix((N_USERS, N_ITEMS)), top_popular(POP_R, 3), seen)
    counts = np.diff(cands.indptr)
    blocks = cands._blocks
    assert len(blocks) > 3 and sorted(r for rows, *_ in blocks for r in rows) == np.flatnonzero(counts).tolist()
    for rows, *_, width in blocks:
        assert width == counts[rows].max() <= max(4, 2 * counts[rows].min())
        assert len(rows) == 1 or len(rows) * width <= 120
    got = cands.top_n(cands.totals(EVIDENCE_R, POP_R, config), 10)
    assert (got[counts == 0] == -1).all()
    _assert_same_ranking(got, history, cf, None, seen, config)


@pytest.mark.parametrize("cells", [1 << 22, 50])  # every user in one block, or a few per block
def test_ties_across_the_nth_place_go_to_the_lower_items(cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Totals on three levels, so most of a row ties and the ties straddle the n-th place: the items
    kept are the lowest of the tied ones, as serving's stable sort keeps, however users are packed."""
    monkeypatch.setattr(algo_candidates, "_PACKED_CELLS", cells)
    history = sp.random(N_USERS, N_ITEMS, density=0.1, random_state=9, format="csr")
    cf = sp.random(N_ITEMS, N_ITEMS, density=0.3, random_state=10, format="csr")
    cands = Candidates.build(history @ cf, sp.csr_matrix((N_USERS, N_ITEMS)), top_popular(POP_R, 6),
                             sp.csr_matrix(history > 0))  # fmt: skip
    raw = cands.totals(EVIDENCE_R, POP_R, HybridConfig(alpha=1.0, evidence_c=0.0))
    total = (np.round(raw * 2 / max(float(raw.max()), 1e-9)) - 1).astype(np.float32)  # -1, 0 (also -0.0), 1
    got = cands.top_n(total, 5)
    ties = 0
    for u in range(N_USERS):
        lo, hi = cands.indptr[u], cands.indptr[u + 1]
        items, scores = cands.items[lo:hi], total[lo:hi] + np.float32(0.0)
        want = items[np.lexsort((items, -scores))][:5]
        assert got[u, : len(want)].tolist() == want.tolist() and (got[u, len(want) :] == -1).all()
        ties += len(want) == 5 and scores[items == want[-1]][0] in scores[~np.isin(items, want)]
    assert ties > 5  # the cut falls inside a tie for many users


def test_positions_of_a_subset_are_those_a_binary_search_finds() -> None:
    rng = np.random.default_rng(11)
    keys = np.unique(rng.integers(0, 10**11, 200_000))
    for share in (0.0, 0.01, 0.5, 1.0):
        sub = keys[rng.random(len(keys)) < share]
        got = algo_candidates._positions(keys, sub)
        assert np.array_equal(got, np.searchsorted(keys, sub)) and np.array_equal(keys[got], sub)
