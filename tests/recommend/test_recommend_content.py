"""Content documents, hashed TF-IDF (== TfidfVectorizer), neighbours and the one-item upsert path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from app.recommend.algo_content import (
    content_neighbours,
    fit_content,
    item_document,
    similar_to_document,
    vectorize,
)

CATALOG = [
    {"title": "Trail running shoe", "categories": ["Shoes > Running"], "brand": "Acme",
     "attributes": {"color": "Red", "size": ["42", "43"]}},
    {"title": "Road running shoe", "categories": ["Shoes > Running"], "brand": "Acme",
     "attributes": {"color": "Blue"}},
    {"title": "Leather office shoe", "categories": ["Shoes > Formal"], "brand": "Bolt"},
    {"title": "Espresso machine", "description": "Makes coffee", "categories": ["Kitchen"],
     "tags": ["coffee", "Gift idea"], "brand": "Brew Co"},
    {"title": "Coffee grinder", "categories": ["Kitchen"], "tags": ["coffee"], "brand": "Brew Co"},
]


def test_item_document_prefixes_structured_tokens() -> None:
    doc = item_document(CATALOG[0])
    tokens = doc.split()
    assert {"cat_shoes", "cat_shoes_running", "brand_acme", "attr_color_red", "attr_size_42",
            "attr_size_43"} <= set(tokens)
    assert tokens[:3] == ["Trail", "running", "shoe"]
    assert "tag_gift_idea" in item_document(CATALOG[3]).split()
    assert item_document({}) == ""
    # a brand token never collides with the same word in a title
    assert "brand_apple" in item_document({"title": "apple", "brand": "Apple"}).split()


def test_hashed_tfidf_equals_tfidf_vectorizer() -> None:
    docs = [item_document(item) for item in CATALOG] + ["shoe shoe shoe coffee", ""]
    ours = fit_content(docs).matrix
    ref = TfidfVectorizer(sublinear_tf=True).fit_transform(docs)
    np.testing.assert_allclose((ours @ ours.T).toarray(), (ref @ ref.T).toarray(), atol=1e-6)
    norms = np.sqrt(np.asarray(ours.multiply(ours).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, [1, 1, 1, 1, 1, 1, 0], atol=1e-6)


def test_content_neighbours_group_similar_items() -> None:
    model = fit_content([item_document(item) for item in CATALOG])
    nb = content_neighbours(model, k=2)
    assert nb.indices[0, 0] == 1 and nb.indices[1, 0] == 0  # the two running shoes
    assert nb.indices[3, 0] == 4 and nb.indices[4, 0] == 3  # the two coffee items
    assert not (nb.indices == np.arange(5)[:, None]).any()
    assert np.all(np.diff(nb.scores, axis=1) <= 0)


def test_upsert_path_matches_the_batch_row() -> None:
    docs = [item_document(item) for item in CATALOG]
    model = fit_content(docs)
    nb = content_neighbours(model, k=3)
    idx, sc = similar_to_document(docs[2], model, k=3, self_index=2)
    np.testing.assert_array_equal(idx, nb.indices[2])
    np.testing.assert_allclose(sc, nb.scores[2], rtol=1e-5)
    # a brand-new coffee item lands next to the coffee items
    new = item_document({"title": "Coffee beans", "categories": ["Kitchen"], "tags": ["coffee"]})
    idx, sc = similar_to_document(new, model, k=2)
    assert set(idx.tolist()) == {3, 4} and sc[0] >= sc[1] > 0


def test_vectorize_unseen_terms_use_max_idf() -> None:
    model = fit_content(["red shoe", "blue shoe"])
    q = vectorize(["zebra"], model.idf)
    assert q.nnz == 1
    assert model.idf[q.indices[0]] == pytest.approx(np.log(3 / 1) + 1)


def test_content_neighbours_prune_common_terms_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Terms in most documents are handled by a bound; the lists equal the all-pairs computation."""
    import scipy.sparse as sp

    from app.recommend import algo_content
    from app.recommend.algo_neighbours import blockwise_topk

    rng = np.random.default_rng(0)
    docs = [f"thing shop {' '.join(f'w{w}' for w in rng.integers(0, 40, 3))}" for _ in range(120)]
    docs += ["thing shop", "thing"]  # rows with common terms only must be recomputed in full
    model = fit_content(docs, n_features=2**12)
    m = model.matrix
    full = blockwise_topk(m.shape[0], m.shape[0], 5, lambda s, e: m[s:e] @ sp.csr_matrix(m.T))
    monkeypatch.setattr(algo_content, "_COMMON_MIN_DF", 10)
    pruned = content_neighbours(model, k=5)
    np.testing.assert_allclose(pruned.scores, full.scores, rtol=1e-5)
