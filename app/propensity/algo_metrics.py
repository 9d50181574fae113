"""Offline metrics of a propensity model on a time holdout, as a JSON-serialisable dict."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score


def best_f1_threshold(y: NDArray[np.bool_], p: NDArray[np.floating[Any]]) -> float:
    """The probability threshold maximising F1 of ``p >= threshold`` on (y, p); 0.5 with one class."""
    if y.all() or not y.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def calibration_table(y: NDArray[np.bool_], p: NDArray[np.floating[Any]], bins: int = 10) -> list[dict[str, Any]]:
    """Equal-count bins of the predicted probability (deciles by default), lowest first.

    Each bin: lowest and highest prediction, number of users, mean prediction, observed rate. Equal
    counts rather than equal widths because propensities crowd near the base rate; the same
    table read top-down is the decile lift chart a marketer knows.
    """
    n = len(p)
    if n == 0:
        return []
    order = np.argsort(p, kind="stable")
    bin_of = np.empty(n, dtype=np.int64)
    bin_of[order] = np.arange(n) * bins // n
    table: list[dict[str, Any]] = []
    for b in range(bins):
        sel = bin_of == b
        if not sel.any():
            continue
        table.append(
            {
                "bin": len(table) + 1,
                "p_min": float(p[sel].min()),
                "p_max": float(p[sel].max()),
                "n": int(sel.sum()),
                "mean_predicted": float(p[sel].mean()),
                "observed_rate": float(y[sel].mean()),
            }
        )
    return table


def evaluate(y: NDArray[np.bool_], p: NDArray[np.floating[Any]], threshold: float) -> dict[str, Any]:
    """AUC, average precision, Brier (and the base rate's), precision/recall/F1 at ``threshold``, calibration.

    ``brier_base_rate`` is the Brier score of predicting the holdout's own base rate for everyone
    (``b·(1-b)``), the strongest constant forecast; ``brier_skill = 1 - brier / brier_base_rate`` is
    positive when the model beats it. AUC and average precision are None when the holdout has one class.
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    base = float(y.mean()) if n else 0.0
    two_classes = 0 < y.sum() < n
    brier = float(brier_score_loss(y, p)) if n else 0.0
    brier_base = base * (1.0 - base)
    predicted = p >= threshold
    tp = int((predicted & y).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(y.sum()), 1)
    table = calibration_table(y, p)
    ece = sum(row["n"] * abs(row["mean_predicted"] - row["observed_rate"]) for row in table) / max(n, 1)
    return {
        "n": n,
        "positives": int(y.sum()),
        "base_rate": base,
        "mean_predicted": float(p.mean()) if n else 0.0,
        "auc": float(roc_auc_score(y, p)) if two_classes else None,
        "average_precision": float(average_precision_score(y, p)) if two_classes else None,
        "brier": brier,
        "brier_base_rate": brier_base,
        "brier_skill": 1.0 - brier / brier_base if brier_base > 0 else None,
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0,
        "expected_calibration_error": float(ece),
        "calibration": table,
    }
