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
from app.recommend.algo_blend import HybridConfig, Sources, combine, propagate, sources, top_n
from app.recommend.algo_matrix import InteractionConfig, _type_weight_table, interactions
from app.recommend.algo_metrics import ranking_metrics, time_holdout
from app.recommend.algo_neighbours import Neighbours, merge_neighbours
from app.recommend.algo_popularity import item_evidence, popularity
from app.recommend.algo_sequence import collaborative_neighbours, sequence_neighbours
from app.recommend.algo_similarity import CF_VARIANTS, CFConfig, CFVariant, cf_neighbours

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


_Trial = tuple[str, sp.csr_matrix | None, bool, HybridConfig]  # name, CF matrix, use content, blend


class _Scorer:
    """Scores the validation users block by block for a list of named trials -> top-20 lists."""

    def __init__(self, history: sp.csr_matrix, seen: sp.csr_matrix, content: sp.csr_matrix,
                 evidence: NDArray[np.float32], pop: NDArray[np.float32], block_bytes: int) -> None:
        self.history, self.seen = history, seen
        self.content = content
        self.evidence, self.pop = evidence, pop
        self.rows = max(1, block_bytes // (8 * 6 * max(1, content.shape[1])))

    def run(self, trials: Sequence[_Trial]) -> dict[str, NDArray[np.int32]]:
        """trials: (name, CF matrix or None, use content, blend) -> {name: int32[n_users, 20]}.

        Trials sharing a CF matrix are scored together, so one block holds one product at a time.
        """
        n_users, n_items = self.history.shape
        tops = {name: np.full((n_users, 20), -1, dtype=np.int32) for name, _, _, _ in trials}
        groups: dict[int, list[_Trial]] = {}
        for trial in trials:
            groups.setdefault(id(trial[1]), []).append(trial)
        for start in range(0, n_users, self.rows):
            stop = min(n_users, start + self.rows)
            h, ex = self.history[start:stop], self.seen[start:stop]
            zero = np.zeros((stop - start, n_items))
            ct_raw = propagate(h, self.content)
            for group in groups.values():
                s_cf = group[0][1]
                cf_raw = zero if s_cf is None else propagate(h, s_cf)
                prepared: dict[bool, Sources] = {}
                for name, _, use_content, hyb in group:
                    if use_content not in prepared:
                        prepared[use_content] = sources(cf_raw, ct_raw if use_content else zero, ex)
                    total = combine(prepared[use_content], self.evidence, self.pop, hyb)
                    tops[name][start:stop] = top_n(total, 20)
        return tops


def validate(
    log: EventLog,
    content: Neighbours,
    config: RecommenderConfig | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    variants: Sequence[CFVariant] = CF_VARIANTS,
    sequence_weights: Sequence[float] = DEFAULT_SEQUENCE_WEIGHTS,
    evidence_cs: Sequence[float] = DEFAULT_EVIDENCE_CS,
    test_fraction: float = 0.2,
    max_users: int = 20_000,
    block_bytes: int = 256 * 1024 * 1024,
    seed: int = 0,
) -> ValidationResult:
    """Hold out each user's most recent `test_fraction`, fit on the rest, pick the CF and alpha.

    Coordinate search by NDCG@10: first the CF (variant x sequence weight) at the configured alpha,
    then alpha over `alphas` for that CF, then the cold-item constant `evidence_c` over `evidence_cs`.

    Parameters
    ----------
    log : the full training log.  content : content Neighbours over items (catalog-only, fitted once).
    config : the starting config; CF variant, sequence weight, alpha and evidence_c are replaced by the
        best found (everything else is kept).
    max_users : evaluate a fixed random sample of at most this many held-out users.
    block_bytes : dense scoring runs over user blocks of about this size (memory bound).

    Returns
    -------
    ValidationResult: metrics for popularity, content, each CF variant alone at the grid's lowest
    sequence weight ("cf_<variant>.*"), the chosen CF alone ("cf.*"), the hybrid ("hybrid.*"), plus the
    chosen "alpha", "sequence_weight", "evidence_c", and "users" / "holdout_events" counts.
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
    relevant, seen = relevant[users], seen[users]
    pop = popularity(train, config.hybrid.pop_half_life_days, now, config.interaction)
    scorer = _Scorer(user_histories(train, config)[users], seen, content.to_csr(n_items), item_evidence(x),
                     pop, block_bytes)
    timings["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    s_cf: dict[tuple[CFVariant, float], sp.csr_matrix] = {}
    cf = config.cf
    seq = None
    if any(w > 0 for w in sequence_weights):
        seq = sequence_neighbours(
            train, cf.k, cf.sequence_window, cf.sequence_max_gap_days, config.interaction
        )
    for variant in variants:
        try:
            base = cf_neighbours(x, replace(cf, variant=variant))
        except ValueError:  # e.g. EASE above its catalog-size limit
            continue
        for weight in sequence_weights:
            merged = base if seq is None else merge_neighbours(base, seq, weight, cf.k)
            s_cf[variant, weight] = merged.to_csr(n_items)
    if not s_cf:
        raise ValueError(f"none of the CF variants {list(variants)} could be fitted")
    timings["cf_fit"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    h = config.hybrid
    cf_only = replace(h, alpha=1.0, evidence_c=0.0, pop_weight=0.0)
    pure = {v: m for (v, w), m in s_cf.items() if w == min(sequence_weights)}
    trials: list[_Trial] = [
        ("popularity", None, False, replace(h, pop_weight=1.0, n_popular=n_items)),
        ("content", None, True, replace(h, alpha=0.0, pop_weight=0.0)),
    ]
    trials += [(f"cf_{v}", m, False, cf_only) for v, m in pure.items()]
    trials += [(f"hyb_{v}_{w:g}", m, True, h) for (v, w), m in s_cf.items()]
    scores = {name: _metrics(top, relevant) for name, top in scorer.run(trials).items()}
    metrics: dict[str, float] = {"users": float(len(users)), "holdout_events": float(mask.sum())}
    variant, weight = max(s_cf, key=lambda vw: scores[f"hyb_{vw[0]}_{vw[1]:g}"]["ndcg@10"])
    chosen_cf = s_cf[variant, weight]
    best_hybrid = scores[f"hyb_{variant}_{weight:g}"]
    # then alpha, then evidence_c (each grid value already scored is not rescored)
    more = [(f"a_{a:g}", chosen_cf, True, replace(h, alpha=float(a))) for a in alphas if a != h.alpha]
    more.append(("cf", chosen_cf, False, cf_only))
    scores.update({name: _metrics(top, relevant) for name, top in scorer.run(more).items()})
    alpha = h.alpha
    for a in alphas:
        if a != h.alpha and scores[f"a_{a:g}"]["ndcg@10"] > best_hybrid["ndcg@10"]:
            best_hybrid, alpha = scores[f"a_{a:g}"], float(a)
    h = replace(h, alpha=alpha)
    other_cs = [float(c) for c in evidence_cs if c != h.evidence_c]
    c_tops = scorer.run([(f"c_{c:g}", chosen_cf, True, replace(h, evidence_c=c)) for c in other_cs])
    best_c = h.evidence_c
    for c in other_cs:
        found = _metrics(c_tops[f"c_{c:g}"], relevant)
        if found["ndcg@10"] > best_hybrid["ndcg@10"]:
            best_hybrid, best_c = found, c
    h = replace(h, evidence_c=best_c)
    timings["score"] = time.perf_counter() - t2

    for name in ("popularity", "content", "cf", *(f"cf_{v}" for v in pure)):
        metrics.update({f"{name}.{key}": value for key, value in scores[name].items()})
    metrics.update({f"hybrid.{key}": value for key, value in best_hybrid.items()})
    metrics["alpha"], metrics["sequence_weight"] = float(alpha), float(weight)
    metrics["evidence_c"] = h.evidence_c
    chosen = replace(config, cf=replace(config.cf, variant=variant, sequence_weight=weight), hybrid=h)
    timings["total"] = time.perf_counter() - t0
    return ValidationResult(config=chosen, metrics=metrics, timings=timings)


def _metrics(top: NDArray[np.int32], relevant: sp.csr_matrix) -> dict[str, float]:
    out = ranking_metrics(top, relevant, (10, 20))
    out.pop("users")
    return out
