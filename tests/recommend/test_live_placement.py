"""Live content placement of upserted items: the blockwise sparse top-k equals the dense computation
it replaced, and its memory follows the block, not batch x catalogue."""

from __future__ import annotations

import tracemalloc

import numpy as np

from app.recommend.algo_content import ContentModel, fit_content, vectorize
from app.recommend.algo_neighbours import topk_dense
from app.recommend.live import LIVE_BLOCK_BYTES, place_documents


def _docs(n: int, seed: int, vocabulary: int = 400, common: str = "") -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join([common, *(f"w{w}" for w in rng.integers(0, vocabulary, size=6))]) for _ in range(n)]


def _dense(docs: list[str], model: ContentModel, own: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """What live.py computed before: the whole b x n similarity matrix, then top-k."""
    sims = np.asarray((vectorize(docs, model.idf) @ model.matrix.T).toarray(), dtype=np.float64)
    for row, pos in enumerate(own):
        if pos >= 0:
            sims[row, pos] = 0.0
    return topk_dense(sims, k)


def test_blockwise_placement_equals_the_dense_product() -> None:
    catalog = _docs(300, seed=1)
    model = fit_content(catalog, n_features=2**12)
    docs = [catalog[5], catalog[17], *_docs(40, seed=2)]  # two existing items re-upserted, 40 new ones
    own = np.array([5, 17, *([-1] * 40)])
    # 3 rows per block: many blocks, each a sparse product reduced on its own
    placed = place_documents(docs, model, own, k=10, block_bytes=3 * 8 * model.n_items)
    idx, scores = _dense(docs, model, own, k=10)
    np.testing.assert_array_equal(placed.scores, scores.astype(np.float32))
    for row in range(len(docs)):
        # the same neighbours with the same scores; an item tied with the k-th may take its place
        last = scores[row, -1]
        got = {i: s for i, s in zip(placed.indices[row].tolist(), placed.scores[row].tolist(), strict=True)
               if s > last}
        want = {i: s for i, s in zip(idx[row].tolist(), scores[row].tolist(), strict=True) if s > last}
        assert got == want and len(want) >= 5
    assert 5 not in placed.indices[0] and 17 not in placed.indices[1]
    assert placed.indices[0][0] >= 0 and (placed.scores[:, :-1] >= placed.scores[:, 1:]).all()


def test_placement_memory_follows_the_block_not_the_batch() -> None:
    """500 items against 20,000 sharing one term (every pair similar): the dense way holds 500 x 20,000
    float64 (80 MB) plus the float32 product it came from (80 MB more, sparse); blockwise, a few blocks."""
    catalog = _docs(20_000, seed=3, vocabulary=5000, common="shop")
    model = fit_content(catalog, n_features=2**16)
    _ = model.inverted  # built once per model and cached with it: not part of a placement
    docs = _docs(500, seed=4, vocabulary=5000, common="shop")
    own = np.full(len(docs), -1)
    dense_bytes = len(docs) * model.n_items * 8
    tracemalloc.start()
    try:
        placed = place_documents(docs, model, own)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (placed.indices[:, 0] >= 0).all()
    assert peak < dense_bytes / 3, f"peak {peak / 2**20:.0f} MB"
    assert peak < 16 * LIVE_BLOCK_BYTES, f"peak {peak / 2**20:.0f} MB"
