"""The candidates a rebuild's validation chooses among, scaled to the shop's own data.

No modelling constant is fixed: each knob below is a short list of values, and `algo_validate` keeps
whichever scores best on the shop's own future (`algo_holdout`). Values that depend on the data's
scale are derived from it: half-lives from the time span, EASE's lambda from the interaction mass
per item. A knob that cannot matter for a log (rating treatments without ratings, half-lives when
timestamps tie) has no candidates and is not tried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from app.eventlog import TYPE_CODE, EventLog
from app.recommend.algo_matrix import DEFAULT_WEIGHTS, _type_weight_table

INF = float("inf")
#: Event-type weights tried against the defaults: purchases (and explicit ratings) only.
PURCHASE_ONLY: dict[str, float] = {"purchase": 5.0, "rating": 3.0}
#: (name, half_life_events, history_limit): how much of a shopper's live history serving reads. The
#: first is the cheapest and the starting point: serving's CPU grows with the entries it scores, so
#: a longer read must beat it by the decay margin to be chosen.
HISTORIES: tuple[tuple[str, float, int], ...] = (("recent_25", 8.0, 25), ("last_200", INF, 200),
                                                 ("last_200_decayed", 32.0, 200))
SEQUENCE_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 0.85)
ALPHAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
EVIDENCE_CS: tuple[float, ...] = (0.0, 1.0, 4.0)
#: Up to 1 (popularity weighs as much as the best CF or content score): on sparse shops, a few purchases
#: per shopper, what everyone buys carries most of what can be predicted. The gain is not monotone
#: (0.05 can lose to off where 1 wins), so every weight is tried, not only past a winning 0.2.
POP_WEIGHTS: tuple[float, ...] = (0.0, 0.05, 0.2, 0.5, 1.0)
NEIGHBOUR_COUNTS: tuple[int, ...] = (50, 100, 200)
#: EDLAE's emphasis c for EASE: the dropout rates p = c / (1 + c) of 0, 0.5 and 0.75. (p = 0.25 won
#: validation by noise-sized margins and lost on the test as often as it gained.)
EASE_DROPOUTS: tuple[float, ...] = (0.0, 1.0, 3.0)
ALS_REGULARIZATIONS: tuple[float, ...] = (1.0, 10.0, 100.0)


@dataclass(frozen=True)
class Knob:
    """One choice: its name, where it applies (`apply(config, value)`) and the labelled values."""

    name: str
    values: tuple[tuple[str, Any], ...]
    apply: Callable[[Any, Any], Any]


def _set(section: str, **fields: Any) -> Callable[[Any, Any], Any]:
    def apply(config: Any, value: Any) -> Any:
        part = getattr(config, section)
        return replace(config, **{section: replace(part, **{f: (value if v is None else v(value))
                                                           for f, v in fields.items()})})
    return apply


def _days(d: float) -> str:
    return "none" if not np.isfinite(d) else f"{d:.3g}d"


def half_lives(span_days: float) -> tuple[float, ...]:
    """No decay, plus half-lives of a half and an eighth of the span (at least a day)."""
    if span_days < 2:
        return (INF,)
    return (INF, max(1.0, span_days / 2), max(1.0, span_days / 8))


def ease_lambdas(x: sp.csr_matrix) -> tuple[float, ...]:
    """EASE's ridge on the scale of the Gram diagonal: the mean squared strength mass per used item,
    times 1, 4 and 16 (denser data needs a larger lambda for the same shrinkage)."""
    mass = np.asarray(x.multiply(x).sum(axis=0)).ravel()
    used = mass[mass > 0]
    base = float(used.mean()) if used.size else 1.0
    return tuple(float(f"{base * f:.3g}") for f in (1.0, 4.0, 16.0))


def _with_weights(config: Any, value: dict[str, float]) -> Any:
    return replace(config, interaction=replace(config.interaction, weights=dict(value)))


def _with_rating(config: Any, value: tuple[float, bool, float]) -> Any:
    scale, centred, threshold = value
    return replace(config, interaction=replace(config.interaction, rating_scale=scale,
                                               rating_centering=centred, rating_threshold=threshold))


def _with_history(config: Any, value: tuple[float, int]) -> Any:
    return replace(config, hybrid=replace(config.hybrid, history_half_life_events=value[0],
                                          history_limit=value[1]))


def _with_popularity(config: Any, value: tuple[float, float]) -> Any:
    return replace(config, hybrid=replace(config.hybrid, pop_weight=value[0], pop_half_life_days=value[1]))


def interaction_knobs(log: EventLog, tied: bool, span_days: float) -> list[Knob]:
    """Knobs that change the interaction matrix (so the CF neighbours), for this log."""
    knobs: list[Knob] = []
    if not tied:
        knobs.append(Knob("half_life_days", tuple((_days(d), d) for d in half_lives(span_days)),
                          _set("interaction", half_life_days=None)))
    knobs.append(Knob("strength", (("log_weighted", False), ("binary", True)),
                      _set("interaction", binary=None)))
    types = set(np.unique(log.type[log.item >= 0]).tolist())
    valued = (log.item >= 0) & (log.type != TYPE_CODE["rating"]) & np.isfinite(log.value) & (log.value > 0)
    if valued.any() and (log.value[valued] != 1).any():  # quantities or counts that differ
        knobs.append(Knob("event_value", (("ignored", False), ("as_count", True)),
                          _set("interaction", value_weighted=None)))
    if TYPE_CODE["rating"] in types:
        knobs.append(Knob("rating", (("centred", (0.5, True, -INF)), ("binary", (0.0, True, -INF)),
                                     ("thresholded", (0.0, True, 3.5))), _with_rating))
    positive = _type_weight_table(DEFAULT_WEIGHTS) > 0
    if TYPE_CODE["purchase"] in types and any(positive[t] for t in types - {TYPE_CODE["purchase"]}):
        knobs.append(Knob("event_weights", (("all_types", dict(DEFAULT_WEIGHTS)),
                                            ("purchase_only", PURCHASE_ONLY)), _with_weights))
    return knobs


def blend_knobs(tied: bool, span_days: float, max_history: int = 200) -> list[Knob]:
    """Knobs that only change how a user's scores are put together (no refit). `max_history`: the
    live history entries kept per shopper (`SHOPMIND_HISTORY_LENGTH`), the most serving can read."""
    pops: list[tuple[str, tuple[float, float]]] = [("off", (0.0, 30.0))]
    for w in POP_WEIGHTS[1:]:
        pops += [(f"{w:g}_all_time", (w, INF))]
        if not tied and span_days >= 2:
            recent = max(1.0, span_days / 16)
            pops += [(f"{w:g}_recent_{recent:.3g}d", (w, recent))]
    recency: list[tuple[str, float]] = [("none", INF)]
    if not tied and span_days >= 2:
        recency += [(_days(max(1.0, span_days / f)), max(1.0, span_days / f)) for f in (4, 16, 64)]
    return [
        Knob("history", tuple((name, (hl, min(limit, max_history))) for name, hl, limit in HISTORIES),
             _with_history),
        Knob("history_half_life_days", tuple(recency), _set("hybrid", history_half_life_days=None)),
        Knob("alpha", tuple((f"{a:g}", a) for a in ALPHAS), _set("hybrid", alpha=None)),
        Knob("evidence_c", tuple((f"{c:g}", c) for c in EVIDENCE_CS), _set("hybrid", evidence_c=None)),
        Knob("popularity", tuple(pops), _with_popularity),
    ]
