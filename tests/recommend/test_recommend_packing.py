"""Neighbour rows packed in bulk for publishing equal `pack_neighbours` row by row."""

from __future__ import annotations

import numpy as np

from app.recommend.algo_neighbours import Neighbours
from app.store.codec import pack_neighbours, unpack_neighbours
from app.worker.stage_recommend import _rows


def test_bulk_packing_equals_pack_neighbours() -> None:
    rng = np.random.default_rng(0)
    n, k = 40, 6
    idx = np.full((n, k), -1, dtype=np.int32)
    sc = np.zeros((n, k), dtype=np.float32)
    for r in range(n):
        w = int(rng.integers(0, k + 1))
        idx[r, :w] = rng.integers(0, 100, w)
        sc[r, :w] = rng.random(w)
    ids = np.array([f"x{i}" for i in range(n)], dtype=object)
    row_ids = np.arange(n, dtype=np.int64)[::-1].copy()
    got = list(_rows(ids, Neighbours(idx, sc), row_ids))
    width = (idx >= 0).sum(axis=1)
    want = [(f"x{row_ids[r]}", pack_neighbours(idx[r, : width[r]], sc[r, : width[r]])) for r in range(n) if width[r]]
    assert got == want
    i, s = unpack_neighbours(got[0][1])
    assert i.tolist() == idx[int(np.flatnonzero(width)[0]), : len(i)].tolist() and len(s) == len(i)
