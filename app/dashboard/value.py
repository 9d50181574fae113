"""The customer-value card: expected revenue per decile of customers, and the top decile's share.

One ZRANGE of the value audience (every customer by expected revenue, written by the worker's value
stage) into numpy; cumulative sums give the deciles without a Python loop over customers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray

from app.store.keys import Keys
from app.value.service import VALUE_AUDIENCE

if TYPE_CHECKING:
    from app.dashboard.service import DashboardCache

DECILES = 10


def _num(value: Any, digits: int = 4) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), digits)


def revenue_deciles(revenue: NDArray[np.float64]) -> dict[str, Any]:
    """Customers ranked by expected revenue, cut into ten groups of (nearly) equal size, top first.

    Returns {"customers", "total", "top_decile_share", "deciles": [{"decile", "customers", "revenue",
    "mean", "share"}]}. Decile k ends at ceil(k·n/10), so the top decile is never empty; with fewer
    than ten customers some lower ones are.
    """
    ranked = np.sort(np.asarray(revenue, dtype=np.float64))[::-1]
    n = len(ranked)
    total = float(ranked.sum())
    edges = -((-np.arange(DECILES + 1) * n) // DECILES)
    cumulative = np.r_[0.0, np.cumsum(ranked)]
    sums = cumulative[edges[1:]] - cumulative[edges[:-1]]
    sizes = np.diff(edges)
    deciles = [
        {"decile": k + 1, "customers": int(sizes[k]), "revenue": _num(sums[k], 2),
         "mean": _num(sums[k] / sizes[k], 2) if sizes[k] else None,
         "share": _num(sums[k] / total) if total > 0 else None}
        for k in range(DECILES)
    ]  # fmt: skip
    return {
        "customers": n,
        "total": _num(total, 2),
        "top_decile_share": deciles[0]["share"],
        "deciles": deciles,
    }


def validated(value_metrics: Any) -> dict[str, Any] | None:
    """The served value model's validation figures from its model_runs row (None without a model)."""
    if not isinstance(value_metrics, dict) or value_metrics.get("status", "ok") != "ok":
        return None
    kind = value_metrics.get("kind")
    figures = value_metrics.get(kind) if isinstance(kind, str) else None
    if not isinstance(figures, dict):
        return None
    return {"kind": kind, **{m: _num(figures.get(m)) for m in ("mae", "spearman", "top10_share")}}


async def value_distribution(
    redis: aioredis.Redis, keys: Keys, version: str | None, meta: dict[str, str], cache: DashboardCache
) -> dict[str, Any]:
    """The deciles of the live version's expected revenue; ``deciles`` empty without a value model.
    Cached in ``cache`` per version: a version never changes."""
    horizon = meta.get("value_horizon_days")
    if version is None or horizon is None:
        return {"horizon_days": None, "customers": 0, "deciles": [], "top_decile_share": None, "total": None}
    cached = cache.histograms.get((version, VALUE_AUDIENCE))
    if cached is not None:
        return cached
    rows = cast(list[tuple[bytes, float]], await redis.zrange(keys.model(version, VALUE_AUDIENCE), 0, -1,
                                                               withscores=True))  # fmt: skip
    revenue = np.fromiter((s for _, s in rows), dtype=np.float64, count=len(rows))
    result = {"horizon_days": _num(float(horizon), 1), **revenue_deciles(revenue)}
    cache.put((version, VALUE_AUDIENCE), result)
    return result
