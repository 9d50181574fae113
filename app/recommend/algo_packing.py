"""Rows of a sparse structure grouped for packing into dense [rows, width] blocks.

A top-k over sparse rows is fastest on a dense block, but a block is as wide as its widest row: packed
all at once, one popular item's row (or one shopper with thousands of candidates) sets the width of
every row beside it. Grouping rows of similar width bounds the padding and the memory of each block.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def packing_runs(counts: NDArray[np.integer], k: int, budget: int) -> list[NDArray[np.intp]]:
    """The rows (indices into ``counts``, each row's width) grouped for packing, narrowest first.

    Within a run the widest row is at most twice the narrowest (or ``k``, below which a row is kept
    whole), so padding stays under half of a run; and rows x widest row <= ``budget`` (or a single
    row), so one catalogue-wide row among 100k sparse ones is never packed 100k rows deep.
    """
    order = np.argsort(counts, kind="stable")
    widths = counts[order]
    runs, start = [], 0
    while start < len(order):
        stop = int(np.searchsorted(widths, max(k, 2 * int(widths[start])), side="right"))
        widest = max(1, int(widths[max(start, stop - 1)]))
        stop = max(start + 1, min(stop, start + budget // widest))
        runs.append(order[start:stop])
        start = stop
    return runs
