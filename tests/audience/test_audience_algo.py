"""`app.recommend.algo_audience` on matrices small enough to work out by hand, plus random ones
checked against a dense brute force (hypothesis)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from app.recommend.algo_audience import item_audiences, item_weights, top_per_row


def test_a_hand_worked_audience() -> None:
    # items 0 and 1 co-occur (S[0,1] = 1, S[1,0] = 0.5); items 2 and 3 co-occur
    s = sp.csr_matrix(np.array([[0, 1, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32))
    history = sp.csr_matrix(np.array([
        [2.0, 0, 0, 0],  # u0: item 0 strongly -> affinity 2.0 for item 1
        [0, 0, 1, 0],    # u1: only the unrelated item 2 -> nothing for item 1
        [1.0, 1, 0, 0],  # u2: item 0 and item 1 itself, which they bought -> 1.0, a buyer
        [0.5, 0, 0, 1],  # u3: a little item 0 -> 0.5
    ], dtype=np.float32))
    bought = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool))
    aud = item_audiences(history, s, bought, n=3)
    assert aud.others.indices[1].tolist() == [0, 3, -1]
    assert np.allclose(aud.others.scores[1], [2.0, 0.5, 0.0])
    assert aud.buyers.indices[1].tolist() == [2, -1, -1] and np.isclose(aud.buyers.scores[1, 0], 1.0)
    # item 3's audience: u1 (item 2 -> 3) and nobody from the item 0/1 side
    assert aud.others.indices[3].tolist() == [1, -1, -1]
    # item 0: u2 (via item 1, 0.5) and u0 holds item 0 only: S[0, 0] = 0, so not an audience of it
    assert aud.others.indices[0].tolist() == [2, -1, -1] and np.isclose(aud.others.scores[0, 0], 0.5)


def test_blocks_do_not_change_the_answer() -> None:
    rng = np.random.default_rng(3)
    history = sp.random(300, 40, density=0.1, random_state=rng, format="csr", dtype=np.float32)
    s = sp.random(40, 40, density=0.2, random_state=rng, format="csr", dtype=np.float32)
    bought = sp.random(300, 40, density=0.05, random_state=rng, format="csr") > 0
    one = item_audiences(history, s, bought, n=25)
    many = item_audiences(history, s, bought, n=25, block_entries=50)  # one or two items per block
    for a, b in ((one.others, many.others), (one.buyers, many.buyers)):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.scores, b.scores)


def test_a_cold_item_leans_on_its_content_neighbours() -> None:
    cf = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32))
    content = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], dtype=np.float32))
    evidence = np.array([5.0, 5.0, 0.0])  # item 2: nobody touched it yet
    w = item_weights(cf, content, evidence, alpha=0.9, evidence_c=1.0)
    assert w[0, 2] > 0 and np.isclose(w[0, 2], 1.0)  # alpha_2 = 0: all content
    assert np.isclose(w[0, 1], 0.9 * 5 / 6) and np.isclose(w[2, 0], 1 - 0.9 * 5 / 6)
    assert np.allclose(item_weights(cf, None, evidence, 0.9, 1.0).toarray(), cf.toarray())


def test_ties_break_by_user_and_the_cut_is_exact() -> None:
    m = sp.csr_matrix(np.array([[3, 1, 3, 0, 2, 3, -1], [0, 0, 0, 0, 0, 0, 0]], dtype=np.float32))
    idx, sc = top_per_row(m, 3)
    assert idx.tolist() == [[0, 2, 5], [-1, -1, -1]]
    assert sc.tolist() == [[3, 3, 3], [0, 0, 0]]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 25), st.integers(1, 12), st.integers(1, 8), st.integers(1, 400))
def test_matches_a_dense_brute_force(seed: int, n_users: int, n_items: int, n: int, block: int) -> None:
    rng = np.random.default_rng(seed)
    history = sp.random(n_users, n_items, density=0.3, random_state=rng, format="csr", dtype=np.float32)
    s = sp.random(n_items, n_items, density=0.4, random_state=rng, format="csr", dtype=np.float32)
    s.data -= 0.2  # some negative weights, as EASE has
    bought = sp.random(n_users, n_items, density=0.2, random_state=rng, format="csr") > 0
    aud = item_audiences(history, s, bought, n=n, block_entries=block)
    dense = (history @ s).toarray()  # [users, items]
    is_buyer = bought.toarray()
    for j in range(n_items):
        for out, mask in ((aud.others, ~is_buyer[:, j]), (aud.buyers, is_buyer[:, j])):
            col = np.where(mask & (dense[:, j] > 0), dense[:, j], 0.0)
            expected = sorted((u for u in range(n_users) if col[u] > 0), key=lambda u: (-np.float32(col[u]), u))[:n]
            got = [int(u) for u in out.indices[j] if u >= 0]
            assert len(got) == len(expected)
            assert np.allclose(out.scores[j][:len(got)], col[got], rtol=1e-5)  # each listed with its affinity
            assert np.allclose(sorted(col[got], reverse=True), [col[u] for u in expected], rtol=1e-5)
            assert np.all(np.diff(out.scores[j][:len(got)]) <= 0)
            assert not (set(got) & set(np.flatnonzero(~mask).tolist()))  # buyers never among the others


def test_over_the_work_budget_each_item_keeps_its_strongest_pointers() -> None:
    # item 2 is pointed at by item 0 (weight 1.0, two shoppers) and item 1 (weight 0.1, three)
    s = sp.csr_matrix(np.array([[0, 0, 1.0], [0, 0, 0.1], [0, 0, 0]], dtype=np.float32))
    history = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.float32))
    bought = sp.csr_matrix((5, 3), dtype=bool)
    whole = item_audiences(history, s, bought, n=5)
    assert sorted(u for u in whole.others.indices[2] if u >= 0) == [0, 1, 2, 3, 4]
    cut = item_audiences(history, s, bought, n=5, max_work=4)  # 5 entries in all: only rank 1 fits
    assert cut.others.indices[2].tolist() == [0, 1, -1, -1, -1]
    assert np.allclose(cut.others.scores[2][:2], [1.0, 1.0])
    # within budget nothing changes
    same = item_audiences(history, s, bought, n=5, max_work=5)
    assert np.array_equal(same.others.indices, whole.others.indices)
