"""The hybrid scorer: a hand-computed example, and serving (per user) == validation (batch)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from app.recommend.algo_blend import HybridConfig, recommend_batch, score_block, score_user, top_n
from app.recommend.algo_neighbours import Neighbours

# items: a=0, b=1 (history), c=2, d=3, e=4
CF_IDX = np.array([[2, -1], [2, 3]], dtype=np.int32)        # a -> c 0.5 ; b -> c 0.1, d 1.0
CF_SC = np.array([[0.5, 0.0], [0.1, 1.0]], dtype=np.float32)
CT_IDX = np.array([[3], [-1]], dtype=np.int32)               # a -> d 1.0 (content)
CT_SC = np.array([[1.0], [0.0]], dtype=np.float32)
EVIDENCE = np.array([5, 5, 1, 3, 0], dtype=np.float32)
POP = np.array([0, 0, 2, 4, 3], dtype=np.float32)


def _score(config: HybridConfig, **kw: object) -> dict[int, tuple[float, float, float, float, int]]:
    s = score_user(np.array([0, 1]), np.array([1.0, 2.0]), CF_IDX, CF_SC, CT_IDX, CT_SC, EVIDENCE, POP,
                   config, **kw)  # type: ignore[arg-type]
    assert np.all(np.diff(s.total) <= 0)
    columns = zip(s.items, s.total, s.cf, s.content, s.popularity, s.reason, strict=True)
    return {int(i): (float(t), float(c), float(n), float(p), int(r)) for i, t, c, n, p, r in columns}


def test_cf_only_scores_and_reasons_by_hand() -> None:
    out = _score(HybridConfig(alpha=1.0, evidence_c=0.0, pop_weight=0.0, n_popular=0))
    # cf_raw: c = 1*0.5 + 2*0.1 = 0.7, d = 2*1.0 = 2.0 ; normalised by 2.0
    assert list(out) == [3, 2]
    assert out[3][:2] == pytest.approx((1.0, 1.0)) and out[3][4] == 1   # d because of b
    assert out[2][:2] == pytest.approx((0.35, 0.35)) and out[2][4] == 0  # c: a gives 0.5 > b's 0.2


def test_adaptive_alpha_content_and_popularity_by_hand() -> None:
    out = _score(HybridConfig(alpha=0.5, evidence_c=1.0, pop_weight=0.1, n_popular=3))
    # alpha_c = 0.5 * 1/2 = 0.25, alpha_d = 0.5 * 3/4 = 0.375; content d = 1 ; pop / max 4
    assert out[2][0] == pytest.approx(0.25 * 0.35 + 0.1 * 0.5)
    assert out[3][0] == pytest.approx(0.375 * 1.0 + 0.625 * 1.0 + 0.1 * 1.0)
    assert out[4] == pytest.approx((0.1 * 0.75, 0.0, 0.0, 0.75, -1))   # popular-only candidate, no reason
    assert list(out) == [3, 2, 4]


def test_exclude_allowed_and_n() -> None:
    cfg = HybridConfig(alpha=0.5, evidence_c=1.0, pop_weight=0.1, n_popular=3)
    assert 3 not in _score(cfg, exclude=np.array([3]))
    assert set(_score(cfg, allowed=np.array([1, 1, 1, 0, 1], dtype=bool))) == {2, 4}
    assert list(_score(cfg, n=1)) == [3]


def test_cold_user_gets_popularity() -> None:
    empty = np.zeros((0, 2), dtype=np.int32)
    s = score_user(np.zeros(0, np.int32), np.zeros(0), empty, empty.astype(np.float32), empty,
                   empty.astype(np.float32), EVIDENCE, POP, HybridConfig(n_popular=10, pop_weight=0.2))
    assert s.items.tolist() == [3, 4, 2]
    np.testing.assert_allclose(s.popularity, [1.0, 0.75, 0.5])
    assert (s.reason == -1).all()


def _random_case(seed: int, n_users: int, n_items: int, k: int, signed: bool
                 ) -> tuple[sp.csr_matrix, Neighbours, Neighbours, np.ndarray, np.ndarray, sp.csr_matrix]:
    rng = np.random.default_rng(seed)

    def neighbours(allow_negative: bool) -> Neighbours:
        idx = np.full((n_items, k), -1, dtype=np.int32)
        sc = np.zeros((n_items, k), dtype=np.float32)
        for i in range(n_items):
            m = int(rng.integers(0, min(k, n_items - 1) + 1))
            others = rng.permutation(np.delete(np.arange(n_items), i))[:m]
            vals = rng.random(m).astype(np.float32) + 0.01
            if allow_negative:
                vals *= rng.choice([-1, 1], m)
            order = np.argsort(-vals)
            idx[i, :m], sc[i, :m] = others[order], vals[order]
        return Neighbours(idx, sc)

    density = float(rng.uniform(0.05, 0.6))
    history = sp.random(n_users, n_items, density=density, format="csr", random_state=seed, dtype=np.float64)
    history.data = rng.random(history.nnz) + 0.05
    evidence = rng.integers(0, 20, n_items).astype(np.float32)
    pop = (rng.random(n_items) * (rng.random(n_items) < 0.7)).astype(np.float32)
    exclude = sp.random(n_users, n_items, density=0.2, format="csr", random_state=seed + 1)
    return history, neighbours(signed), neighbours(False), evidence, pop, exclude


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_users=st.integers(1, 6), n_items=st.integers(2, 25),
       k=st.integers(1, 6), signed=st.booleans(), alpha=st.floats(0, 1),
       evidence_c=st.sampled_from([0.0, 2.0]), pop_weight=st.sampled_from([0.0, 0.3]),
       n_popular=st.integers(0, 8))
def test_batch_scorer_equals_per_user_scorer(seed: int, n_users: int, n_items: int, k: int, signed: bool,
                                             alpha: float, evidence_c: float, pop_weight: float,
                                             n_popular: int) -> None:
    history, cf, ct, evidence, pop, exclude = _random_case(seed, n_users, n_items, k, signed)
    config = HybridConfig(alpha=alpha, evidence_c=evidence_c, pop_weight=pop_weight, n_popular=n_popular)
    batch = score_block(history, cf.to_csr(), ct.to_csr(), evidence, pop, config, exclude)
    tops = recommend_batch(history, cf.to_csr(), ct.to_csr(), evidence, pop, config, 5, exclude,
                           block_users=2)
    for u in range(n_users):
        h_items, h_w = history[u].indices, history[u].data
        s = score_user(h_items, h_w, cf.indices[h_items], cf.scores[h_items], ct.indices[h_items],
                       ct.scores[h_items], evidence, pop, config, exclude=exclude[u].indices)
        finite = np.flatnonzero(np.isfinite(batch[u]))
        assert sorted(s.items.tolist()) == finite.tolist()
        np.testing.assert_allclose(s.total, batch[u, s.items], rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(s.total)) and np.all(np.diff(s.total) <= 0)
        assert not set(s.items.tolist()) & set(exclude[u].indices.tolist())  # excluded never returned
        assert set(s.reason[s.reason >= 0].tolist()) <= set(h_items.tolist())
        ranked = tops[u][tops[u] >= 0]
        assert not set(ranked.tolist()) & set(exclude[u].indices.tolist())
        np.testing.assert_allclose(batch[u, ranked], s.total[: len(ranked)], rtol=1e-5, atol=1e-6)


def test_top_n_orders_and_pads() -> None:
    total = np.array([[0.1, -np.inf, 0.3, 0.2], [-np.inf] * 4])
    np.testing.assert_array_equal(top_n(total, 3), [[2, 3, 0], [-1, -1, -1]])
    np.testing.assert_array_equal(top_n(total, 6)[0], [2, 3, 0, -1, -1, -1])


def test_top_n_breaks_ties_across_the_nth_place_by_the_lower_item() -> None:
    """Scores on four levels (and -inf): most rows tie across the 5th place; the kept items are the
    lowest of the tied ones, as `score_user`'s stable sort keeps, -0.0 tying with 0.0."""
    rng = np.random.default_rng(2)
    total = rng.integers(-1, 3, (60, 40)).astype(np.float32)
    total[total == -1] = -np.inf
    total[:, 3] = -0.0
    got = top_n(total, 5)
    straddled = 0
    for row, items in zip(total, got, strict=True):
        ranked = np.lexsort((np.arange(len(row)), -(row + np.float32(0.0))))[:5]
        np.testing.assert_array_equal(items, np.where(np.isneginf(row[ranked]), -1, ranked))
        straddled += int((row == row[ranked[-1]]).sum() > (row[ranked] == row[ranked[-1]]).sum())
    assert straddled > 30


def _reasons_by_hand(h_items: np.ndarray, h_w: np.ndarray, cf: Neighbours, ct: Neighbours,
                     evidence: np.ndarray, s_items: list[int], s_cf_max: float, s_ct_max: float,
                     config: HybridConfig) -> list[int]:
    """Per candidate, loop over every source entry (CF rows, then content rows, each row in order) and
    keep the first with the largest blended contribution; -1 unless it is positive."""
    out = []
    for c in s_items:
        ev = float(evidence[c])
        a = config.alpha * (ev / (ev + config.evidence_c)) if config.evidence_c > 0 else config.alpha
        best, why = -np.inf, -1
        for part, share in ((cf, a / s_cf_max), (ct, (1.0 - a) / s_ct_max)):
            for h, w in zip(h_items, h_w, strict=True):
                for j, s in zip(part.indices[h], part.scores[h], strict=True):
                    contribution = float(w) * float(s) * share
                    if j == c and s != 0 and contribution > best:
                        best, why = contribution, int(h)
        out.append(why if best > 0 else -1)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_items=st.integers(2, 25), k=st.integers(1, 6), signed=st.booleans(),
       alpha=st.floats(0, 1), evidence_c=st.sampled_from([0.0, 2.0]), n=st.sampled_from([None, 1, 3]))
def test_each_reason_is_the_first_largest_contributor(seed: int, n_items: int, k: int, signed: bool,
                                                      alpha: float, evidence_c: float, n: int | None) -> None:
    history, cf, ct, evidence, pop, _ = _random_case(seed, 1, n_items, k, signed)
    h_items, h_w = history[0].indices, history[0].data
    if seed % 2:  # ties: equal weights and equal scores everywhere
        h_w = np.ones_like(h_w)
        cf = Neighbours(cf.indices, np.where(cf.indices >= 0, 0.5, 0.0).astype(np.float32))
        ct = Neighbours(ct.indices, np.where(ct.indices >= 0, 0.5, 0.0).astype(np.float32))
    config = HybridConfig(alpha=alpha, evidence_c=evidence_c, n_popular=3)
    s = score_user(h_items, h_w, cf.indices[h_items], cf.scores[h_items], ct.indices[h_items],
                   ct.scores[h_items], evidence, pop, config, n=n)
    # the normalisers of score_user: the largest |raw| of each source over all candidates
    raw_cf = np.zeros(n_items)
    raw_ct = np.zeros(n_items)
    for h, w in zip(h_items, h_w, strict=True):
        for part, raw in ((cf, raw_cf), (ct, raw_ct)):
            for j, sc in zip(part.indices[h], part.scores[h], strict=True):
                if j >= 0:
                    raw[j] += w * sc
    cf_max = float(np.abs(raw_cf).max()) or 1.0
    ct_max = float(np.abs(raw_ct).max()) or 1.0
    assert s.reason.tolist() == _reasons_by_hand(h_items, h_w, cf, ct, evidence, s.items.tolist(), cf_max, ct_max,
                                                 config)
