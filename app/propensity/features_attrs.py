"""User attributes as feature columns: numeric kept, categorical one-hot with a cap on levels.

Which attributes are numeric, and which levels of a categorical attribute get a column, is decided
once from the data (``infer_attributes``) and stored in the ``FeatureSpec``, so the training and the
scoring matrices always have the same columns.

Caveat, documented rather than detected: attributes are the user's *current* values. An attribute
the shop updates because of the outcome (``lifetime_value``, ``is_customer``) leaks the label into
the training features; send only attributes that were known before the behaviour they describe.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_ATTRIBUTES = 50
"""At most this many attributes become features (most often present first)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | bool) and not (isinstance(v, float) and math.isnan(v))


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def infer_attributes(
    user_attributes: Sequence[Mapping[str, Any] | None] | None, max_levels: int = 10
) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
    """Decide the attribute columns: (numeric names, ((categorical name, kept levels), ...)).

    An attribute is numeric when every present value is an int/float/bool, categorical when every
    present value is a string (or a mix: then all values are read as strings). Categorical levels
    keep the ``max_levels`` most frequent (ties by name); attributes that look like identifiers
    (more distinct values than ``max_levels`` and than half of the users having them) are skipped.
    Nested values (lists, dicts) are skipped.
    """
    if not user_attributes:
        return (), ()
    present: Counter[str] = Counter()
    values: dict[str, list[Any]] = {}
    for attrs in user_attributes:
        for key, v in (attrs or {}).items():
            if _is_missing(v) or isinstance(v, list | dict | tuple | set):
                continue
            present[key] += 1
            values.setdefault(key, []).append(v)
    numeric: list[str] = []
    categorical: list[tuple[str, tuple[str, ...]]] = []
    for key, _ in sorted(present.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_ATTRIBUTES]:
        vals = values[key]
        if all(_is_number(v) for v in vals):
            numeric.append(key)
            continue
        counts = Counter(str(v) for v in vals)
        if len(counts) > max_levels and len(counts) > len(vals) / 2:
            continue
        levels = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_levels]
        categorical.append((key, tuple(level for level, _ in levels)))
    return tuple(sorted(numeric)), tuple(sorted(categorical))


def attribute_columns(
    user_attributes: Sequence[Mapping[str, Any] | None] | None,
    n_users: int,
    numeric: Sequence[str],
    categorical: Sequence[tuple[str, Sequence[str]]],
) -> tuple[list[str], list[str], NDArray[np.float32]]:
    """(names, descriptions, float32[n_users, n_cols]) for the attribute columns of a spec.

    Missing numeric values are NaN (gradient boosting routes them natively; the linear fallback
    imputes the median). A categorical attribute gives one 0/1 column per kept level; a missing or
    unseen level is all zeros. This is a loop over users, but only over their attribute dicts,
    once per matrix, not over events.
    """
    n_cols = len(numeric) + sum(len(levels) for _, levels in categorical)
    out = np.zeros((n_users, n_cols), dtype=np.float32)
    names: list[str] = []
    descriptions: list[str] = []
    if n_cols == 0:
        return names, descriptions, out
    if user_attributes is not None and len(user_attributes) != n_users:
        raise ValueError(f"user_attributes has {len(user_attributes)} rows for {n_users} users")
    rows = list(user_attributes) if user_attributes is not None else [None] * n_users
    col = 0
    for key in numeric:
        out[:, col] = [float(a[key]) if a and key in a and _is_number(a[key]) else np.nan for a in rows]
        names.append(f"attr:{key}")
        descriptions.append(f"user attribute {key} (number)")
        col += 1
    for key, levels in categorical:
        pos = {level: k for k, level in enumerate(levels)}
        codes = np.fromiter(
            (pos.get(str(a[key]), -1) if a and key in a and not _is_missing(a[key]) else -1 for a in rows),
            dtype=np.int64,
            count=n_users,
        )
        hit = codes >= 0
        out[np.flatnonzero(hit), col + codes[hit]] = 1.0
        for level in levels:
            names.append(f"attr:{key}={level}")
            descriptions.append(f"user attribute {key} is {level}")
        col += len(levels)
    return names, descriptions, out
