"""Per-user explanations: which features push a user's score up or down, in a marketer's words.

Attribution is "replace with the typical value": the impact of feature f for user u is
``p(x_u) - p(x_u with x_uf := median_f)``, the median taken over the training rows. It is exact
for the model actually serving (calibration included), model-agnostic (gradient boosting, the
logistic fallback), and cheap: only the features where a user differs from the median are
re-scored, in chunks of stacked copies of the user's row, so one prediction call covers thousands of
(user, feature) pairs. Limitation: correlated features are replaced one at a time, so the impacts
do not add up to ``p - p(median user)``; they rank the reasons, they do not decompose the score.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.propensity.features import TYPE_WORDS

MIN_IMPACT = 1e-4
"""Impacts below this (in probability) are not reported as factors."""


@dataclass(frozen=True)
class Factor:
    """One reason: ``impact`` is the signed change in probability the feature's value causes
    compared with the typical user (``direction`` "up" when positive)."""

    feature: str
    text: str
    direction: str
    impact: float
    value: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def factor_arrays(
    model: Any, X: NDArray[np.float32], rows: NDArray[np.intp] | None = None, k: int = 3, chunk: int = 2048
) -> tuple[NDArray[np.int16], NDArray[np.float32], NDArray[np.float32]]:
    """The k strongest factors of each requested row, as plain arrays.

    Returns (feature int16[m, k] with -1 for "no factor", impact float32[m, k] signed probability,
    value float32[m, k] the user's feature value), strongest first. ``model`` is a PropensityModel.
    """
    rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.intp)
    m, d = len(rows), X.shape[1]
    feat = np.full((m, k), -1, dtype=np.int16)
    impact = np.zeros((m, k), dtype=np.float32)
    value = np.zeros((m, k), dtype=np.float32)
    if model.kind == "constant" or m == 0 or d == 0 or k == 0:
        return feat, impact, value
    ref = model.reference
    kk = min(k, d)
    for start in range(0, m, chunk):
        Xc = X[rows[start : start + chunk]]
        differs = (Xc != ref) & ~(np.isnan(Xc) & np.isnan(ref))
        r, f = np.nonzero(differs)
        base = model.predict_proba(Xc)
        contrib = np.zeros(Xc.shape, dtype=np.float64)
        if len(r):
            Xrep = Xc[r]
            Xrep[np.arange(len(r)), f] = ref[f]
            contrib[r, f] = base[r] - model.predict_proba(Xrep)
        mag = np.abs(contrib)
        top = np.argpartition(-mag, kk - 1, axis=1)[:, :kk] if kk < d else np.tile(np.arange(d), (len(Xc), 1))
        order = np.argsort(-np.take_along_axis(mag, top, axis=1), axis=1, kind="stable")[:, :kk]
        top = np.take_along_axis(top, order, axis=1)
        top_impact = np.take_along_axis(contrib, top, axis=1)
        keep = np.abs(top_impact) >= MIN_IMPACT
        sl = slice(start, start + len(Xc))
        feat[sl, :kk] = np.where(keep, top, -1)
        impact[sl, :kk] = np.where(keep, top_impact, 0.0)
        value[sl, :kk] = np.where(keep, np.take_along_axis(Xc, top, axis=1), 0.0)
    return feat, impact, value


def top_factors(model: Any, X: NDArray[np.float32], user_rows: Any, k: int = 3) -> list[list[Factor]]:
    """Per requested row of X, up to k Factors, strongest first (a few ms for one user)."""
    feat, impact, value = factor_arrays(model, X, np.atleast_1d(np.asarray(user_rows, dtype=np.intp)), k)
    return render_factors(model, feat, impact, value)


def render_factors(
    model: Any, feat: NDArray[np.int16], impact: NDArray[np.float32], value: NDArray[np.float32]
) -> list[list[Factor]]:
    """Factor objects (with marketer text) from the arrays ``factor_arrays`` returns."""
    names = model.feature_names
    cap = model.spec.recency_cap_days
    category = model.spec.category or "category"
    out: list[list[Factor]] = []
    for frow, irow, vrow in zip(feat.tolist(), impact.tolist(), value.tolist(), strict=True):
        out.append(
            [
                Factor(
                    feature=names[f],
                    text=describe_value(names[f], v, cap, category),
                    direction="up" if i > 0 else "down",
                    impact=round(i, 4),
                    value=v,
                )
                for f, i, v in zip(frow, irow, vrow, strict=True)
                if f >= 0
            ]
        )
    return out


def _n(v: float, singular: str, plural: str | None = None) -> str:
    count = round(v)
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _days(v: float) -> str:
    return "less than a day" if v < 1 else _n(v, "day")


_SINGULAR = {"product views": "product view", "clicks": "click", "cart additions": "cart addition",
             "cart removals": "cart removal", "purchases": "purchase", "ratings": "rating", "likes": "like",
             "dislikes": "dislike", "bookmarks": "bookmark"}  # fmt: skip


def describe_value(name: str, v: float, cap: float, category: str = "category") -> str:
    """A feature value in a marketer's words, e.g. 'last purchase 45 days ago'."""
    capped = v >= cap
    if name in {"days_since_last_event", "days_since_last_purchase", "days_since_last_cart"}:
        what = {"days_since_last_event": "activity", "days_since_last_purchase": "purchase",
                "days_since_last_cart": "cart addition"}[name]  # fmt: skip
        return f"no {what} in the last {round(cap)} days" if capped else f"last {what} {_days(v)} ago"
    if name == "days_since_last_cat_event":
        return (
            f"no {category} activity in {round(cap)} days"
            if capped
            else f"last {category} activity {_days(v)} ago"
        )
    if name == "days_since_last_cat_purchase":
        return (
            f"no {category} purchase in {round(cap)} days"
            if capped
            else f"last {category} purchase {_days(v)} ago"
        )
    if name == "tenure_days":
        return f"first seen {_days(v)} ago"
    if name == "days_between_purchases":
        return "no repeat purchases yet" if capped else f"buys every {_days(v)} on average"
    if name == "activity_trend":
        if abs(v) < 0.05:
            return "steady activity: last 30 days like the 30 before"
        return f"{'more' if v > 0 else 'less'} active in the last 30 days than in the 30 before"
    if name == "events_per_session":
        return f"{v:.1f} interactions per visit"
    if name == "avg_purchase_value":
        return f"average purchase value {v:.2f}"
    totals = {
        "events_total": ("interaction", "no activity ever"),
        "purchases_total": ("purchase", "never purchased"),
        "sessions_total": ("visit", "no visits"),
    }
    if name in totals:
        word, none = totals[name]
        return none if v == 0 else f"{_n(v, word)} in total"
    if name == "revenue_total":
        return "has never spent money" if v == 0 else f"spent {v:.2f} in total"
    if name in {"distinct_items", "distinct_items_30d", "distinct_categories"}:
        noun = "categories" if name == "distinct_categories" else "products"
        when = " in the last 30 days" if name.endswith("30d") else ""
        return f"interacted with {round(v)} different {noun}{when}"
    windowed = re.fullmatch(r"(.+)_(\d+)d", name)
    if windowed:
        stem, w = windowed.group(1), windowed.group(2)
        span = f"in the last {w} days"
        if stem == "events":
            return f"no activity {span}" if v == 0 else f"{_n(v, 'interaction')} {span}"
        if stem == "active_days":
            return f"no active days {span}" if v == 0 else f"active on {_n(v, 'day')} of the last {w}"
        if stem == "sessions":
            return f"no visits {span}" if v == 0 else f"{_n(v, 'visit')} {span}"
        if stem == "revenue":
            return f"no spending {span}" if v == 0 else f"spent {v:.2f} {span}"
        if stem == "abandoned_carts":
            return (
                f"no abandoned carts {span}"
                if v == 0
                else f"{_n(v, 'cart addition')} {span} without purchase"
            )
        if stem == "cat_events":
            return (
                f"no {category} activity {span}" if v == 0 else f"{_n(v, f'{category} interaction')} {span}"
            )
        if stem == "cat_carts":
            return (
                f"no {category} cart additions {span}"
                if v == 0
                else f"{_n(v, f'{category} cart addition')} {span}"
            )
        if stem in TYPE_WORDS:
            plural = TYPE_WORDS[stem]
            return f"no {plural} {span}" if v == 0 else f"{_n(v, _SINGULAR[plural], plural)} {span}"
    if name == "cat_events_total":
        return f"{_n(v, f'{category} interaction')} in total"
    if name == "cat_purchases_total":
        return f"never bought {category}" if v == 0 else f"bought {category} {_n(v, 'time')}"
    if name.startswith("attr:"):
        key, _, level = name[5:].partition("=")
        if level:
            return f"{key} is {level}" if v >= 0.5 else f"{key} is not {level}"
        return f"{key} unknown" if np.isnan(v) else f"{key} is {v:g}"
    return f"{name} = {v:g}"
