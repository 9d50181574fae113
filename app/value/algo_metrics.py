"""How well predicted customer value matched what customers then spent."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import spearmanr


def top_share(actual: NDArray[np.float64], predicted: NDArray[np.float64], share: float = 0.1) -> float:
    """Share of the actual revenue made by the top ``share`` of customers ranked by prediction (ties
    broken by position, so a constant prediction scores about ``share``). 0 when nobody spent."""
    total = float(actual.sum())
    if total <= 0 or len(actual) == 0:
        return 0.0
    k = max(1, int(np.ceil(share * len(actual))))
    top = np.argsort(-predicted, kind="stable")[:k]
    return float(actual[top].sum() / total)


def value_metrics(
    actual_revenue: NDArray[np.float64],
    predicted_revenue: NDArray[np.float64],
    actual_purchases: NDArray[np.float64],
    predicted_purchases: NDArray[np.float64],
) -> dict[str, Any]:
    """MAE, Spearman rank correlation and top-10 % revenue share of revenue; MAE of transactions."""
    varied = len(actual_revenue) > 1 and np.ptp(actual_revenue) > 0 and np.ptp(predicted_revenue) > 0
    rho = spearmanr(actual_revenue, predicted_revenue).statistic if varied else np.nan  # undefined on a constant
    return {
        "n": len(actual_revenue),
        "mae": round(float(np.abs(actual_revenue - predicted_revenue).mean()), 4),
        "spearman": round(float(rho), 4) if np.isfinite(rho) else None,
        "top10_share": round(top_share(actual_revenue, predicted_revenue), 4),
        "purchases_mae": round(float(np.abs(actual_purchases - predicted_purchases).mean()), 4),
        "actual_revenue_mean": round(float(actual_revenue.mean()), 4),
        "predicted_revenue_mean": round(float(predicted_revenue.mean()), 4),
    }
