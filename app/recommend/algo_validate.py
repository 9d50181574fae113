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
from app.recommend.algo_blend import HybridConfig, blend_dense, top_n
from app.recommend.algo_matrix import InteractionConfig, _type_weight_table, interactions
from app.recommend.algo_metrics import ranking_metrics, time_holdout
from app.recommend.algo_neighbours import Neighbours
from app.recommend.algo_popularity import item_evidence, popularity
from app.recommend.algo_similarity import CF_VARIANTS, CFConfig, CFVariant, cf_neighbours

DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


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


def fit(log: EventLog, config: RecommenderConfig, now: float | None = None) -> FittedModel:
    """Interaction matrix, CF neighbours, popularity and evidence from a log (the rebuild path)."""
    now = float(log.ts.max()) if now is None and len(log) else (now or 0.0)
    x = interactions(log, config.interaction, now)
    hist_cfg = replace(config.interaction, half_life_days=config.hybrid.history_half_life_days)
    user_now = np.maximum(last_event_time(log), -1e300)
    return FittedModel(
        interactions=x,
        history=interactions(log, hist_cfg, user_now),
        cf=cf_neighbours(x, config.cf),
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


def _trials(
    config: RecommenderConfig, variants: Sequence[CFVariant], alphas: Sequence[float], n_items: int
) -> list[tuple[str, CFVariant | None, HybridConfig]]:
    """(name, cf variant or None, blend) for every ranking validation computes."""
    h = config.hybrid
    out: list[tuple[str, CFVariant | None, HybridConfig]] = [
        ("popularity", None, replace(h, pop_weight=1.0, n_popular=n_items)),
        ("content", None, replace(h, alpha=0.0, pop_weight=0.0)),
    ]
    for variant in variants:
        out.append((f"cf_{variant}", variant, replace(h, alpha=1.0, evidence_c=0.0, pop_weight=0.0)))
        out.extend((f"hybrid_{variant}_{a:g}", variant, replace(h, alpha=float(a))) for a in alphas)
    return out


def validate(
    log: EventLog,
    content: Neighbours,
    config: RecommenderConfig | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    variants: Sequence[CFVariant] = CF_VARIANTS,
    test_fraction: float = 0.2,
    max_users: int = 20_000,
    block_bytes: int = 256 * 1024 * 1024,
    seed: int = 0,
) -> ValidationResult:
    """Hold out each user's most recent `test_fraction`, fit on the rest, pick variant and alpha.

    Parameters
    ----------
    log : the full training log.  content : content Neighbours over items (catalog-only, fitted once).
    config : the starting config; its CF variant and hybrid alpha are replaced by the best found.
    max_users : evaluate a fixed random sample of at most this many held-out users.
    block_bytes : dense scoring runs over user blocks of about this size (memory bound).

    Returns
    -------
    ValidationResult: best config by NDCG@10, metrics for popularity, content, each CF variant alone
    ("cf_<variant>.*"), the chosen CF ("cf.*") and the hybrid ("hybrid.*"), plus "alpha" and "users".
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
    hist_cfg = replace(config.interaction, half_life_days=config.hybrid.history_half_life_days)
    history = interactions(train, hist_cfg, np.maximum(last_event_time(train), -1e300))[users]
    relevant, seen = relevant[users], seen[users]
    pop = popularity(train, config.hybrid.pop_half_life_days, now, config.interaction)
    evidence = item_evidence(x)
    s_content = content.to_csr(n_items)
    timings["prepare"] = time.perf_counter() - t0

    s_cf: dict[CFVariant, sp.csr_matrix] = {}
    for variant in variants:
        t1 = time.perf_counter()
        try:
            s_cf[variant] = cf_neighbours(x, replace(config.cf, variant=variant)).to_csr(n_items)
        except ValueError:  # e.g. EASE above its catalog-size limit
            continue
        timings[f"cf_{variant}"] = time.perf_counter() - t1

    if not s_cf:
        raise ValueError(f"none of the CF variants {list(variants)} could be fitted")
    t2 = time.perf_counter()
    trials = [t for t in _trials(config, list(s_cf), alphas, n_items) if t[1] is None or t[1] in s_cf]
    tops = {name: np.full((len(users), 20), -1, dtype=np.int32) for name, _, _ in trials}
    rows = max(1, block_bytes // (8 * 4 * max(1, n_items)))
    zero_block: NDArray[np.float64] | None = None
    for start in range(0, len(users), rows):
        stop = min(len(users), start + rows)
        h, ex = history[start:stop], seen[start:stop]
        ct_raw = np.asarray((h @ s_content).toarray(), dtype=np.float64)
        zero_block = np.zeros_like(ct_raw)
        cf_raw = {v: np.asarray((h @ s).toarray(), dtype=np.float64) for v, s in s_cf.items()}
        for name, variant, hyb in trials:
            cf_part = zero_block if variant is None else cf_raw[variant]
            ct_part = zero_block if name.startswith("cf_") else ct_raw
            tops[name][start:stop] = top_n(blend_dense(cf_part, ct_part, evidence, pop, hyb, ex), 20)
    timings["score"] = time.perf_counter() - t2

    metrics: dict[str, float] = {"users": float(len(users)), "holdout_events": float(mask.sum())}
    best: tuple[float, CFVariant, float] = (-1.0, config.cf.variant, config.hybrid.alpha)
    for name, variant, hyb in trials:
        result = ranking_metrics(tops[name], relevant, (10, 20))
        result.pop("users")
        if name.startswith("hybrid_") and variant is not None:
            if result["ndcg@10"] > best[0]:
                best = (result["ndcg@10"], variant, hyb.alpha)
            continue
        metrics.update({f"{name}.{key}": value for key, value in result.items()})
    _, variant, alpha = best
    chosen = replace(config, cf=replace(config.cf, variant=variant), hybrid=replace(config.hybrid, alpha=alpha))
    final = ranking_metrics(tops[f"hybrid_{variant}_{alpha:g}"], relevant, (10, 20))
    final.pop("users")
    metrics.update({f"hybrid.{key}": value for key, value in final.items()})
    metrics.update({f"cf.{key}": metrics[f"cf_{variant}.{key}"] for key in final})
    metrics["alpha"] = alpha
    timings["total"] = time.perf_counter() - t0
    return ValidationResult(config=chosen, metrics=metrics, timings=timings)
