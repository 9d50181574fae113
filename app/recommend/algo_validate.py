"""Model fitting and time-holdout validation: choose the CF variant and alpha by NDCG@10.

Validation scores users with the very functions serving uses (`blend_dense` is `score_user`
vectorised over users), so the metrics stored with a model version describe what it serves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.recommend.algo_blend import HybridConfig
from app.recommend.algo_matrix import InteractionConfig, _type_weight_table, interactions
from app.recommend.algo_metrics import time_holdout
from app.recommend.algo_neighbours import Neighbours, merge_neighbours
from app.recommend.algo_popularity import item_evidence, popularity
from app.recommend.algo_sequence import collaborative_neighbours, sequence_neighbours
from app.recommend.algo_similarity import CF_VARIANTS, CFConfig, CFVariant, cf_neighbours
from app.recommend.algo_validate_scoring import Trial, make_scorer

DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
DEFAULT_SEQUENCE_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 0.85)
DEFAULT_EVIDENCE_CS: tuple[float, ...] = (0.0, 1.0, 4.0)


@dataclass(frozen=True)
class RecommenderConfig:
    """Everything a rebuild needs; the worker passes it, validation returns the chosen one."""

    interaction: InteractionConfig = field(default_factory=InteractionConfig)
    cf: CFConfig = field(default_factory=CFConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)


@dataclass(frozen=True)
class FittedModel:
    """What the worker publishes (besides content neighbours, fitted on the catalog).

    interactions: csr float32[n_users, n_items]; cf: Neighbours over items; popularity and evidence:
    float32[n_items]; history: csr float32[n_users, n_items] user strengths with the history decay.
    """

    interactions: sp.csr_matrix
    history: sp.csr_matrix
    cf: Neighbours
    popularity: NDArray[np.float32]
    evidence: NDArray[np.float32]


@dataclass(frozen=True)
class ValidationResult:
    """Chosen config plus JSON-serialisable metrics ("hybrid.ndcg@10", ...) and stage timings (s)."""

    config: RecommenderConfig
    metrics: dict[str, float]
    timings: dict[str, float]


def last_event_time(log: EventLog) -> NDArray[np.float64]:
    """Each user's last event time, float64[n_users] (-inf for users without events)."""
    out = np.full(log.n_users, -np.inf)
    np.maximum.at(out, log.user, log.ts)
    return out


def history_config(config: RecommenderConfig) -> InteractionConfig:
    """The InteractionConfig that weighs a user's history for scoring (serving uses it too)."""
    return replace(
        config.interaction,
        half_life_days=config.hybrid.history_half_life_days,
        half_life_events=config.hybrid.history_half_life_events,
    )


def user_histories(log: EventLog, config: RecommenderConfig) -> sp.csr_matrix:
    """History strengths of every user as of their own last event, csr float32[n_users, n_items]."""
    return interactions(log, history_config(config), np.maximum(last_event_time(log), -1e300))


def fit(log: EventLog, config: RecommenderConfig, now: float | None = None) -> FittedModel:
    """Interaction matrix, CF neighbours, popularity and evidence from a log (the rebuild path)."""
    now = float(log.ts.max()) if now is None and len(log) else (now or 0.0)
    x = interactions(log, config.interaction, now)
    return FittedModel(
        interactions=x,
        history=user_histories(log, config),
        cf=collaborative_neighbours(log, x, config.cf, config.interaction),
        popularity=popularity(log, config.hybrid.pop_half_life_days, now, config.interaction),
        evidence=item_evidence(x),
    )


def holdout_targets(
    train: EventLog, test: EventLog, config: InteractionConfig
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(relevant, seen), both csr bool[n_users, n_items].

    relevant: items of the user's held-out events of a positively weighted type (any rating counts),
    minus items already seen in training (those are excluded from the ranking, so unreachable).
    """
    shape = (train.n_users, train.n_items)
    tr = train.item >= 0
    seen = sp.csr_matrix((np.ones(tr.sum(), dtype=bool), (train.user[tr], train.item[tr])), shape=shape)
    positive = _type_weight_table(config.weights)[test.type.astype(np.intp)] > 0
    te = (test.item >= 0) & positive
    rel = sp.csr_matrix((np.ones(te.sum(), dtype=bool), (test.user[te], test.item[te])), shape=shape)
    rel = rel.astype(np.int8) - rel.multiply(seen).astype(np.int8)
    rel.eliminate_zeros()
    return sp.csr_matrix(rel > 0), seen


def validate(
    log: EventLog,
    content: Neighbours,
    config: RecommenderConfig | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    variants: Sequence[CFVariant] = CF_VARIANTS,
    sequence_weights: Sequence[float] = DEFAULT_SEQUENCE_WEIGHTS,
    evidence_cs: Sequence[float] = DEFAULT_EVIDENCE_CS,
    test_fraction: float = 0.2,
    max_users: int = 5_000,
    seed: int = 0,
) -> ValidationResult:
    """Hold out each user's most recent `test_fraction`, fit on the rest, choose the served config.

    Coordinate search by hybrid NDCG@10, one knob at a time from `config`: the CF variant (at the
    configured sequence weight), the sequence weight, alpha, then the cold-item constant evidence_c.

    Parameters
    ----------
    log : the full training log.  content : content Neighbours over items (catalog-only, fitted once).
    config : the starting config; its CF variant, sequence weight, alpha and evidence_c are replaced
        by the best found (everything else is kept).
    max_users : evaluate a fixed random sample of at most this many held-out users (NDCG@10 over
        5k users is precise to about +-0.004; the cost grows with them).

    Returns
    -------
    ValidationResult: metrics ("<name>.<metric>@k") for "popularity", "content", each CF variant
    alone at the configured sequence weight ("cf_<variant>"), the chosen CF alone ("cf") and the
    hybrid ("hybrid"), plus the chosen "alpha", "sequence_weight", "evidence_c" and the counts
    "users" and "holdout_events".
    """
    config = config or RecommenderConfig()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    mask = time_holdout(log, test_fraction)
    train, test = log.select(~mask), log.select(mask)
    relevant, seen = holdout_targets(train, test, config.interaction)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)  # score only users with held-out items
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    now = float(train.ts.max()) if len(train) else 0.0
    x = interactions(train, config.interaction, now)
    n_items = x.shape[1]
    pop = popularity(train, config.hybrid.pop_half_life_days, now, config.interaction)
    scorer = make_scorer(user_histories(train, config)[users], seen[users], relevant[users],
                         content.to_csr(n_items), item_evidence(x), pop)
    timings["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    cf, h = config.cf, config.hybrid
    seq = None
    if cf.sequence_weight > 0 or any(w > 0 for w in sequence_weights):
        seq = sequence_neighbours(
            train, cf.k, cf.sequence_window, cf.sequence_max_gap_days, config.interaction
        )
    bases: dict[CFVariant, Neighbours] = {}
    for variant in variants:
        try:
            bases[variant] = cf_neighbours(x, replace(cf, variant=variant))
        except ValueError:  # e.g. EASE above its catalog-size limit
            continue
    if not bases:
        raise ValueError(f"none of the CF variants {list(variants)} could be fitted")

    def served(variant: CFVariant, weight: float) -> sp.csr_matrix:
        merged = bases[variant] if seq is None else merge_neighbours(bases[variant], seq, weight, cf.k)
        return merged.to_csr(n_items)

    by_variant = {v: served(v, cf.sequence_weight) for v in bases}
    timings["cf_fit"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    cf_only = replace(h, alpha=1.0, evidence_c=0.0, pop_weight=0.0)
    trials: list[Trial] = [
        ("popularity", None, False, replace(h, pop_weight=1.0, n_popular=n_items)),
        ("content", None, True, replace(h, alpha=0.0, pop_weight=0.0)),
    ]
    trials += [(f"cf_{v}", m, False, cf_only) for v, m in by_variant.items()]
    trials += [(f"hybrid_{v}", m, True, h) for v, m in by_variant.items()]
    scores = scorer.run(trials)
    variant = max(by_variant, key=lambda v: scores[f"hybrid_{v}"]["ndcg@10"])
    best, weight, chosen_cf = scores[f"hybrid_{variant}"], cf.sequence_weight, by_variant[variant]
    if seq is not None:
        others = {w: served(variant, w) for w in sequence_weights if w != cf.sequence_weight}
        found = scorer.run([(f"w_{w:g}", m, True, h) for w, m in others.items()])
        for w, m in others.items():
            if found[f"w_{w:g}"]["ndcg@10"] > best["ndcg@10"]:
                best, weight, chosen_cf = found[f"w_{w:g}"], w, m
    grid = [float(a) for a in alphas if a != h.alpha]
    found = scorer.run([(f"a_{a:g}", chosen_cf, True, replace(h, alpha=a)) for a in grid]
                       + [("cf", chosen_cf, False, cf_only)])
    scores["cf"] = found.pop("cf")
    for a in grid:
        if found[f"a_{a:g}"]["ndcg@10"] > best["ndcg@10"]:
            best, h = found[f"a_{a:g}"], replace(h, alpha=a)
    grid = [float(c) for c in evidence_cs if c != h.evidence_c]
    found = scorer.run([(f"c_{c:g}", chosen_cf, True, replace(h, evidence_c=c)) for c in grid])
    for c in grid:
        if found[f"c_{c:g}"]["ndcg@10"] > best["ndcg@10"]:
            best, h = found[f"c_{c:g}"], replace(h, evidence_c=c)
    timings["score"] = time.perf_counter() - t2

    metrics: dict[str, float] = {"users": float(len(users)), "holdout_events": float(mask.sum())}
    for name in ("popularity", "content", "cf", *(f"cf_{v}" for v in by_variant)):
        metrics.update({f"{name}.{key}": value for key, value in scores[name].items()})
    metrics.update({f"hybrid.{key}": value for key, value in best.items()})
    metrics.update(alpha=h.alpha, sequence_weight=float(weight), evidence_c=h.evidence_c)
    chosen = replace(config, cf=replace(cf, variant=variant, sequence_weight=weight), hybrid=h)
    timings["total"] = time.perf_counter() - t0
    return ValidationResult(config=chosen, metrics=metrics, timings=timings)
