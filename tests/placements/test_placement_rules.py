"""The rules on tiny hand-made lists whose right order can be worked out by hand."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.placements import rules
from app.placements.schemas import Condition, Diversity, PlacementIn

META = {
    "a": {"c": ["shoes"], "p": 50.0, "b": "Acme", "g": ["sale"], "x": {"color": "red", "organic": True}},
    "b": {"c": ["shoes"], "p": 20.0, "b": "Zed", "x": {"color": "blue", "organic": 1}},
    "c": {"c": ["hats"], "p": 80.0, "b": "Acme"},
    "d": {"c": [], "p": None},
}


def test_conditions_match_each_part() -> None:
    assert rules.matches(Condition(category="shoes"), META["a"])
    assert not rules.matches(Condition(category="shoes"), META["c"])
    assert rules.matches(Condition(brand="Acme", max_price=60), META["a"])
    assert not rules.matches(Condition(brand="Acme", max_price=60), META["c"])
    assert rules.matches(Condition(tags=["new", "sale"]), META["a"])
    assert not rules.matches(Condition(tags=["sale"]), META["b"])
    assert not rules.matches(Condition(min_price=10), META["d"])  # no price: a price condition fails
    assert rules.matches(Condition.model_validate({"attributes": {"color": ["red", "green"]}}), META["a"])
    assert not rules.matches(Condition.model_validate({"attributes": {"color": "red"}}), META["b"])
    # true is not 1: a boolean attribute condition does not match a number
    assert rules.matches(Condition.model_validate({"attributes": {"organic": True}}), META["a"])
    assert not rules.matches(Condition.model_validate({"attributes": {"organic": True}}), META["b"])


def test_boosts_multiply_and_rotation_demotes_recent_items() -> None:
    spec = PlacementIn.model_validate({
        "boosts": [{"where": {"brand": "Acme"}, "factor": 2.0}, {"where": {"category": "hats"}, "factor": 0.5}],
        "rotation": {"window_minutes": 10, "strength": 0.75},
    })
    ids = ["a", "b", "c"]
    now = 10_000.0
    shown = {"b": now - 60, "c": now - 3600}  # b inside the window, c outside
    out = rules.adjusted_scores(ids, [1.0, 1.0, 1.0], [META[i] for i in ids], spec, shown, now)
    np.testing.assert_allclose(out, [2.0, 0.25, 1.0])  # a x2; b x(1-0.75); c x2 x0.5


def test_max_per_category_caps_primary_categories() -> None:
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    cats = ["x", "x", "y", None, "y"]
    assert rules.select(scores, cats, Diversity(max_per_category=1), 5) == [0, 2, 3]
    assert rules.select(scores, cats, Diversity(max_per_category=2), 3) == [0, 1, 2]
    assert rules.select(scores, cats, None, 2) == [0, 1]


def test_mmr_trades_score_for_dissimilarity() -> None:
    # 0 and 1 are near duplicates; 2 is different and scores a little lower
    scores = np.array([1.0, 0.95, 0.8])
    sim = np.array([[1, 0.99, 0], [0.99, 1, 0], [0, 0, 1]], dtype=np.float32)
    # lambda 0.5: after 0, item 1 is worth 0.5*0.95 - 0.5*0.99 < 0, item 2 0.5*0.8 - 0 > 0
    assert rules.select(scores, [None] * 3, Diversity.model_validate({"lambda": 0.5}), 3, sim) == [0, 2, 1]
    assert rules.select(scores, [None] * 3, Diversity.model_validate({"lambda": 1.0}), 3, sim) == [0, 1, 2]


def test_pins_land_on_their_positions() -> None:
    assert rules.place_pins(["a", "b", "c"], [("p", 1), ("q", 3)]) == ["p", "a", "q", "b", "c"]
    assert rules.place_pins(["a"], [("q", 9)]) == ["a", "q"]  # a short list: at the end


@given(st.lists(st.floats(0, 10), min_size=1, max_size=30), st.integers(1, 3), st.integers(1, 30))
def test_selection_is_sorted_distinct_and_capped(values: list[float], cap: int, m: int) -> None:
    scores = np.array(values)
    cats = [f"c{k % 4}" for k in range(len(values))]
    picked = rules.select(scores, cats, Diversity(max_per_category=cap), m)
    assert len(picked) == len(set(picked)) <= m
    assert all(scores[a] >= scores[b] for a, b in pairwise(picked))
    for c in set(cats):
        assert sum(cats[k] == c for k in picked) <= cap


def test_content_cosine_equals_the_sparse_product() -> None:
    import scipy.sparse as sp

    from app.placements.arrange import content_cosine

    rng = np.random.default_rng(3)
    dense = rng.random((40, 300)) * (rng.random((40, 300)) < 0.05)
    dense[7] = 0.0  # an item without any feature
    matrix = sp.csr_matrix(dense.astype(np.float32))
    pos = np.array([5, -1, 7, 12, 5, 39, 0], dtype=np.int64)  # a repeat, a new item (-1), an empty row
    got = content_cosine(matrix, pos)
    rows = matrix[np.maximum(pos, 0)].toarray() * (pos >= 0)[:, None]
    np.testing.assert_allclose(got, rows @ rows.T, rtol=1e-5, atol=1e-6)
    # no candidate the model knows, a single one, and two with nothing in common
    assert not content_cosine(matrix, np.array([-1, -1], dtype=np.int64)).any()
    one = content_cosine(matrix, np.array([5], dtype=np.int64))
    np.testing.assert_allclose(one, [[float(matrix[5].multiply(matrix[5]).sum())]], rtol=1e-5)
    apart = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32))
    np.testing.assert_allclose(content_cosine(apart, np.array([0, 1], dtype=np.int64)), [[1, 0], [0, 4]])


def test_content_cosine_keeps_csr_rows_when_padding_would_waste_memory() -> None:
    import scipy.sparse as sp

    from app.placements.arrange import content_cosine, padded_rows

    rng = np.random.default_rng(4)
    dense = rng.random((30, 400)) * (rng.random((30, 400)) < 0.02)
    dense[3] = rng.random(400)  # one long description among short ones
    matrix = sp.csr_matrix(dense.astype(np.float32))
    assert padded_rows(matrix) is None
    pos = np.array([3, 0, -1, 17, 3], dtype=np.int64)
    rows = matrix[np.maximum(pos, 0)].toarray() * (pos >= 0)[:, None]
    np.testing.assert_allclose(content_cosine(matrix, pos), rows @ rows.T, rtol=1e-5, atol=1e-6)
    assert padded_rows(sp.csr_matrix(dense[:3].astype(np.float32))) is not None
