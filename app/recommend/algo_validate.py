"""Model fitting and validation on the shop's own future: every modelling constant chosen by NDCG@10.

Validation scores users with the very functions serving uses (`blend_dense` is `score_user`
vectorised over users), so the metrics stored with a model version describe what it serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.recommend.algo_blend import POPULARITY_ONLY, HybridConfig
from app.recommend.algo_grid import (
    ALS_REGULARIZATIONS,
    EASE_DROPOUTS,
    NEIGHBOUR_COUNTS,
    SEQUENCE_WEIGHTS,
    blend_knobs,
    ease_lambdas,
    interaction_knobs,
)
from app.recommend.algo_holdout import Holdout, time_span_days, validation_holdout
from app.recommend.algo_matrix import InteractionConfig, _type_weight_table, interactions, recency_rank
from app.recommend.algo_neighbours import BLOCK_THREADS, Neighbours, merge_neighbours
from app.recommend.algo_popularity import item_evidence, popularity
from app.recommend.algo_sequence import collaborative_neighbours, sequence_neighbours
from app.recommend.algo_similarity import CF_VARIANTS, CFConfig, CFVariant, cf_neighbours
from app.recommend.algo_validate_scoring import Scorer, make_scorer


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
    """Chosen config plus JSON-serialisable metrics ("hybrid.ndcg@10", "grid", ...) and timings (s):
    "prepare" and "total" are wall clock, "cf_fit" and "score" the sum over the folds, which run side
    by side (so they may add up to more than the total)."""

    config: RecommenderConfig
    metrics: dict[str, Any]
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
        binary=False,
    )


def user_histories(log: EventLog, config: RecommenderConfig) -> sp.csr_matrix:
    """History strengths of every user as of their own last event, csr float32[n_users, n_items].

    Only each user's `history_limit` most recent item events count: serving reads no more of the
    live history than that, so validation scores what serving will see.
    """
    has_item = log.item >= 0
    recent = np.zeros(len(log), dtype=bool)
    recent[has_item] = recency_rank(log.user[has_item], log.ts[has_item], log.n_users) < config.hybrid.history_limit
    if not recent.all():
        log = log.select(recent)
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


#: A decay (a half-life) is adopted only when it beats the current choice (no decay, at first) by this
#: many standard errors of the per-user NDCG@10 difference: a decay bets that the past misleads, and
#: noise is no evidence of that. A longer history read must beat the cheaper one as clearly: it costs
#: serving CPU on every request. (A fixed 2 % margin let a 152-day history decay win on a shop of 600
#: shoppers whose tastes never change.)
DECAY_MARGIN_SE = 2.0
#: ... and by at least this much NDCG@10: where the metric itself is near zero (a window of noise),
#: a relative margin is no protection (0.0068 -> 0.0074 chose a 200-entry read on random views).
MIN_GAIN = 0.002


def clearly_better(candidate: NDArray[np.float64], current: NDArray[np.float64]) -> bool:
    """Whether the per-user NDCG@10 of `candidate` beats `current` (the same users, paired) by
    DECAY_MARGIN_SE standard errors of the mean difference and by MIN_GAIN."""
    diff = candidate - current
    if len(diff) < 2:
        return False
    se = float(diff.std(ddof=1)) / np.sqrt(len(diff))
    return bool(float(diff.mean()) > max(DECAY_MARGIN_SE * se, MIN_GAIN))
MARGIN_KNOBS = frozenset({"half_life_days", "history_half_life_days", "history"})
#: Above this many events, validation runs on a random sample of users holding about this many.
VALIDATION_MAX_EVENTS = 1_000_000
#: Splits every candidate is scored on (see `validate`); a second costs the validation about as much again.
VALIDATION_FOLDS = 2
#: CF matrices kept per fold (the search goes back to its best after each candidate); each is up to
#: n_items x k entries, 160 MB at 100k items and k = 200.
CF_CACHE = 3
#: Neighbour fits kept per fold, before any sequence blend (each n_items x k, 160 MB at 100k items
#: and k = 200): two, so the neighbour-count knob finds the search's best among them, and truncates it.
FIT_CACHE = 2


@dataclass
class _Evaluator:
    """Scores configs on one validation split, caching what several configs share.

    Interaction matrices, CF neighbours, histories and popularity are cached by the config fields
    they depend on; the CF cache keeps only the last few fits (at scale each is hundreds of MB).
    """

    train: EventLog
    users: NDArray[np.intp]
    relevant: sp.csr_matrix
    seen: sp.csr_matrix
    content: sp.csr_matrix
    now: float
    kind: str = "time_cut"
    window_days: float | None = None
    holdout_events: int = 0
    sampled_events: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    per_user: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    """NDCG@10 per validation user of each trial of the last run."""
    _x: dict[Any, tuple[sp.csr_matrix, NDArray[np.float32]]] = field(default_factory=dict)
    _cf: dict[Any, sp.csr_matrix] = field(default_factory=dict)
    _fit: dict[Any, Neighbours] = field(default_factory=dict)
    _seq: dict[Any, Neighbours] = field(default_factory=dict)
    _scorers: dict[Any, Scorer] = field(default_factory=dict)

    def _clock(self, name: str, t0: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def matrix(self, c: InteractionConfig) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        key = repr(c)
        if key not in self._x:
            x = interactions(self.train, c, self.now)
            self._x = {key: (x, item_evidence(x))}  # one at a time: the search moves one knob
        return self._x[key]

    def cf(self, config: RecommenderConfig) -> sp.csr_matrix:
        """The served CF matrix (variant blended with sequence neighbours), csr [n_items, n_items]."""
        cf, inter = config.cf, config.interaction
        # (interaction, variant, k, the variant's other constants...): `_wider_fit` reads this layout
        fit_key = (repr(inter), cf.variant, cf.k, cf.ease_lambda, cf.ease_dropout, cf.ease_zero_diagonal, cf.shrink,
                   cf.als_regularization)
        key = (*fit_key, cf.sequence_weight)
        if key in self._cf:  # least recently used evicted first: the search returns to its current best
            self._cf[key] = self._cf.pop(key)
            return self._cf[key]
        t0 = time.perf_counter()
        if fit_key in self._fit:  # the sequence weights blend one fit: it is not redone per weight
            self._fit[fit_key] = self._fit.pop(fit_key)
        else:
            wider = self._wider_fit(fit_key)
            if wider is not None:
                fitted = Neighbours(wider.indices[:, :cf.k].copy(), wider.scores[:, :cf.k].copy())
            else:
                fitted = cf_neighbours(self.matrix(inter)[0], cf)
            if len(self._fit) >= FIT_CACHE:
                self._fit.pop(next(iter(self._fit)))
            self._fit[fit_key] = fitted
        base = self._fit[fit_key]
        if cf.sequence_weight > 0:
            skey = (repr(inter.weights), cf.k, cf.sequence_window, cf.sequence_max_gap_days)
            if skey not in self._seq:
                self._seq = {skey: sequence_neighbours(self.train, cf.k, cf.sequence_window,
                                                       cf.sequence_max_gap_days, inter)}
            base = merge_neighbours(base, self._seq[skey], cf.sequence_weight, cf.k)
        if len(self._cf) >= CF_CACHE:
            self._cf.pop(next(iter(self._cf)))
        self._cf[key] = base.to_csr(self.train.n_items)
        self._clock("cf_fit", t0)
        return self._cf[key]

    @staticmethod
    def scorer_key(config: RecommenderConfig) -> tuple[Any, ...]:
        """What a scorer depends on: the histories it reads and the popularity it blends."""
        h = config.hybrid
        return (repr(config.interaction), h.history_half_life_days, h.history_half_life_events,
                h.history_limit, h.pop_half_life_days)

    def _wider_fit(self, fit_key: tuple[Any, ...]) -> Neighbours | None:
        """A kept fit that differs from `fit_key` only by a larger k, when its top k is the smaller
        k's fit: rows sorted by score hold the top k first. Not for signed variants (EASE), whose
        rows are chosen by magnitude but sorted by score. Saves the neighbour-count knob its refits."""
        inter, variant, k, *rest = fit_key
        if variant == "ease":
            return None
        for (w_inter, w_variant, w_k, *w_rest), fitted in self._fit.items():
            if (w_inter, w_variant, w_rest) == (inter, variant, rest) and w_k >= k:
                return fitted
        return None

    def scorer(self, config: RecommenderConfig) -> Scorer:
        key = self.scorer_key(config)
        h = config.hybrid
        if key not in self._scorers:
            _, evidence = self.matrix(config.interaction)
            pop = popularity(self.train, h.pop_half_life_days, self.now, config.interaction)
            history = user_histories(self.train, config)[self.users]
            self._scorers = {key: make_scorer(history, self.seen, self.relevant, self.content, evidence, pop)}
        return self._scorers[key]

    def run(self, trials: list[tuple[str, RecommenderConfig, bool]]) -> dict[str, dict[str, float]]:
        """(name, config, use CF) -> metrics; trials sharing a scorer are scored together."""
        out: dict[str, dict[str, float]] = {}
        t0 = time.perf_counter()
        # One scorer is kept, and its first trial builds the candidates the rest reuse (at scale the
        # costliest part of a trial); the popularity knob alternates flavours (all-time, recent), so
        # in the given order each of its trials would build them again. The scorer in hand goes first.
        groups: dict[tuple[Any, ...], list[tuple[str, RecommenderConfig, bool]]] = {k: [] for k in self._scorers}
        for trial in trials:
            groups.setdefault(self.scorer_key(trial[1]), []).append(trial)
        for name, config, use_cf in (trial for group in groups.values() for trial in group):
            scorer = self.scorer(config)
            s_cf = self.cf(config) if use_cf else None
            use_content = use_cf or config.hybrid.pop_weight < POPULARITY_ONLY
            out.update(scorer.run([(name, s_cf, use_content, config.hybrid)]))
            self.per_user[name] = scorer.per_user[name]
        self._clock("score", t0)
        return {name: out[name] for name, _, _ in trials}


def _fold(sample: EventLog, holdout: Holdout, content: Neighbours, max_users: int, seed: int) -> _Evaluator | None:
    """An evaluator on one split of `sample`, or None when no shopper with a past is held out."""
    train, test = sample.select(~holdout.mask), sample.select(holdout.mask)
    relevant, seen = holdout_targets(train, test, InteractionConfig())
    known = np.diff(seen.indptr) > 0
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & known)
    if not len(users):
        return None
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    now = holdout.cut if holdout.kind == "time_cut" else float(train.ts.max())
    return _Evaluator(train, users, relevant[users], seen[users], content.to_csr(train.n_items), now,
                      kind=holdout.kind, window_days=holdout.window_days if np.isfinite(holdout.window_days) else None,
                      holdout_events=int(holdout.mask.sum()), sampled_events=len(sample))


@dataclass
class _Folds:
    """The validation folds, scored together: a trial's metrics are their mean over the folds."""

    folds: list[_Evaluator]
    timings: dict[str, float] = field(default_factory=dict)
    per_user: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    """NDCG@10 of each trial of the last run, per validation user of every fold (fold after fold)."""

    def matrix(self, c: InteractionConfig) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        return self.folds[0].matrix(c)

    def _each(self, work: Callable[[_Evaluator], Any]) -> list[Any]:
        """`work(fold)` of every fold, in fold order. The folds share nothing, and their fits and
        scoring are numpy and scipy calls that release the GIL, so they run on threads side by side
        (as many as the item-item blocks use): at scale, validation is most of the rebuild."""
        if len(self.folds) < 2 or BLOCK_THREADS < 2:
            return [work(fold) for fold in self.folds]
        with ThreadPoolExecutor(max_workers=min(BLOCK_THREADS, len(self.folds))) as pool:
            return list(pool.map(work, self.folds))

    def cf(self, config: RecommenderConfig) -> None:
        self._each(lambda fold: fold.cf(config))

    def run(self, trials: list[tuple[str, RecommenderConfig, bool]]) -> dict[str, dict[str, float]]:
        found = self._each(lambda fold: fold.run(trials))
        for fold in self.folds:
            for name, seconds in fold.timings.items():
                self.timings[name] = self.timings.get(name, 0.0) + seconds
            fold.timings.clear()
        self.per_user = {name: np.concatenate([fold.per_user[name] for fold in self.folds]) for name in found[0]}
        return {name: {m: float(np.mean([f[name][m] for f in found])) for m in found[0][name]}
                for name in found[0]}


def _sample_users(log: EventLog, max_events: int, seed: int) -> EventLog:
    """The events of a random subset of users holding about `max_events` (all of them below that)."""
    if len(log) <= max_events:
        return log
    return log.select(sampled_users(log, max_events, seed)[log.user])


def sampled_users(log: EventLog, max_events: int, seed: int) -> NDArray[np.bool_]:
    """bool[n_users]: a random subset of users whose events number about `max_events`."""
    per_user = np.bincount(log.user, minlength=log.n_users)
    order = np.random.default_rng(seed).permutation(log.n_users)
    keep = order[: int(np.searchsorted(np.cumsum(per_user[order]), max_events)) + 1]
    chosen = np.zeros(log.n_users, dtype=bool)
    chosen[keep] = True
    return chosen


def validate(
    log: EventLog,
    content: Neighbours,
    config: RecommenderConfig | None = None,
    alphas: Sequence[float] | None = None,
    variants: Sequence[CFVariant] = CF_VARIANTS,
    max_users: int = 5_000,
    max_events: int = VALIDATION_MAX_EVENTS,
    max_history: int = 200,
    seed: int = 0,
) -> ValidationResult:
    """Choose every modelling constant by NDCG@10 on the shop's own future (`algo_holdout`).

    A coordinate search from `config`, one knob at a time, each keeping its best value: the CF
    variant, the interaction knobs (`algo_grid.interaction_knobs`: decay, rating treatment, event
    weights), EASE's lambda, the neighbour count, the sequence weight, then the blend knobs (history
    read, alpha, evidence_c, popularity). When the chosen hybrid still scores below popularity, the
    served blend becomes popularity itself: nothing validated worse than it is served.

    Parameters
    ----------
    log : the full training log.  content : content Neighbours over items (catalog-only, fitted once).
    alphas, variants : narrow those two knobs (tests).
    max_users : score a fixed random sample of at most this many validation users (NDCG@10 over 5k
        users is precise to about +-0.004).  max_events : above it, validate on a user sample.
    max_history : the live history length kept per shopper, the longest history serving can read.

    Returns
    -------
    ValidationResult. metrics: "<name>.<metric>@k" for "popularity", "content", "cf" and "hybrid"
    (the chosen config), "users", "holdout_events"; "holdout" (kind, window_days); "grid": per knob,
    the NDCG@10 of each value tried; "chosen": per knob, the value kept.
    """
    config = config or RecommenderConfig()
    t0 = time.perf_counter()
    sample = _sample_users(log, max_events, seed)
    holdout = validation_holdout(sample, seed=seed)
    first = _fold(sample, holdout, content, max_users, seed)
    if first is None:
        raise ValueError("no shopper with a history has a held-out event")
    ev = _Folds([first])
    # The second fold is the same split of what the first one trains on: the window before the
    # window (a rolling origin) for a time cut, another random or per-user share otherwise. One
    # window's winners are partly luck; a value must do well on two to beat one that does on both.
    for _ in range(VALIDATION_FOLDS - 1):
        rest = sample.select(~holdout.mask)
        try:
            holdout = validation_holdout(rest, seed=seed + len(ev.folds))
        except ValueError:
            break
        fold = _fold(rest, holdout, content, max_users, seed) if holdout.kind == ev.folds[0].kind else None
        if fold is None:
            break
        ev.folds.append(fold)
        sample = rest
    ev.timings["prepare"] = time.perf_counter() - t0
    train = first.train
    span = time_span_days(train)
    tied = first.kind == "random"
    # Tied timestamps have no order, so a "sequence" would be the order of the import file: noise
    # that the validation split (random, like the order) can reward by chance.
    sequence_weights = (0.0,) if tied else SEQUENCE_WEIGHTS
    if tied:
        config = replace(config, cf=replace(config.cf, sequence_weight=0.0))

    grid: dict[str, dict[str, float]] = {}
    chosen: dict[str, str] = {}
    best_config, best = config, -1.0

    def search(knob: str, candidates: list[tuple[str, RecommenderConfig]]) -> None:
        """Score every candidate; keep the best, the current config unless one beats it."""
        nonlocal best_config, best
        found = ev.run([(label, c, True) for label, c in candidates])
        grid[knob] = {label: round(m["ndcg@10"], 6) for label, m in found.items()}
        current = next((label for label, c in candidates if c == best_config), None)
        if current is not None:
            best = found[current]["ndcg@10"]  # the same config, scored again: equal up to caching
            chosen[knob] = current
        else:  # the starting value is not a choice here: the best candidate wins outright
            best = -1.0
        for label, c in candidates:
            if found[label]["ndcg@10"] <= best + 1e-9:
                continue
            if knob in MARGIN_KNOBS and current is not None and not clearly_better(
                    ev.per_user[label], ev.per_user[chosen[knob]]):
                continue
            best, best_config, chosen[knob] = found[label]["ndcg@10"], c, label

    def cf_knob(name: str, values: Sequence[tuple[str, Any]], field_name: str) -> None:
        search(name, [(label, replace(best_config, cf=replace(best_config.cf, **{field_name: v})))
                      for label, v in values])

    knobs = {k.name: k for k in blend_knobs(tied, span, max_history)}

    def blend(name: str) -> None:
        knob = knobs[name]
        values = knob.values
        if name == "alpha" and alphas is not None:
            values = tuple((f"{a:g}", a) for a in alphas)
        search(name, [(label, knob.apply(best_config, v)) for label, v in values])

    usable = []
    for v in variants:  # fit each once up front: a variant that cannot be fitted is left out
        try:
            ev.cf(replace(config, cf=replace(config.cf, variant=v)))
            usable.append(v)
        except ValueError:  # e.g. EASE above its catalog-size limit
            continue
    if not usable:
        raise ValueError(f"none of the CF variants {list(variants)} could be fitted")
    if config.cf.variant not in usable:
        best_config = replace(config, cf=replace(config.cf, variant=usable[0]))
    # The cheap knobs that shape what the others are judged by go first (how much history is read,
    # whether order matters), the variant is searched again once everything else has moved.
    blend("history")
    cf_knob("sequence_weight", [(f"{w:g}", w) for w in sequence_weights], "sequence_weight")
    cf_knob("cf_variant", [(v, v) for v in usable], "variant")
    for knob in interaction_knobs(train, tied, span):
        search(knob.name, [(label, knob.apply(best_config, v)) for label, v in knob.values])
    def variant_strength() -> None:
        """The ridge of EASE or ALS, once per variant; a grid whose end wins goes one step further
        (x4 beyond it): the mass-scaled grid centres on typical data, a shop's may lie outside it."""
        variant = best_config.cf.variant
        if variant == "ease" and "ease_lambda" not in grid:
            name, grid_values = "ease_lambda", list(ease_lambdas(ev.matrix(best_config.interaction)[0]))
        elif variant == "als" and "als_regularization" not in grid:
            name, grid_values = "als_regularization", list(ALS_REGULARIZATIONS)
        else:
            return
        field_name = name
        cf_knob(name, [(f"{v:g}", v) for v in grid_values], field_name)
        kept = getattr(best_config.cf, field_name)
        if kept in (grid_values[0], grid_values[-1]):
            tried = grid.pop(name)
            beyond = float(f"{(kept * 4 if kept == grid_values[-1] else kept / 4):.3g}")
            cf_knob(name, [(f"{kept:g}", kept), (f"{beyond:g}", beyond)], field_name)
            grid[name] = {**tried, **grid[name]}

    def ease_ridge_and_form() -> None:
        """EASE's ridge in proportion to each item's mass (EDLAE), on top of its flat ridge, then its
        form: with the zero-diagonal constraint, column j of the weights is scaled by 1 / P[j, j];
        without it (EDLAE's full rank), by item j's ridge. Off the diagonal the two differ by one
        constant per column, which sets how much an item's own popularity lifts it; the emphasis is
        searched again for the full rank. (Searching the flat ridge again beside the emphasis never
        moved it, on any benchmark data set, and cost two fits per fold.)"""
        if best_config.cf.variant != "ease" or "ease_dropout" in grid:
            return
        dropouts = [(f"{c:g}", c) for c in EASE_DROPOUTS]
        cf_knob("ease_dropout", dropouts, "ease_dropout")
        cf_knob("ease_form", [("zero_diagonal", True), ("full_rank", False)], "ease_zero_diagonal")
        if not best_config.cf.ease_zero_diagonal:
            grid["ease_dropout_zero_diagonal"] = grid.pop("ease_dropout")
            cf_knob("ease_dropout", dropouts, "ease_dropout")

    variant_strength()
    ease_ridge_and_form()
    cf_knob("neighbours_k", [(str(k), k) for k in NEIGHBOUR_COUNTS], "k")
    for name in ("history_half_life_days", "alpha", "evidence_c", "popularity"):
        blend(name)
    # A second pass over the knobs whose best value depends most on the others; the blend's are
    # cheap (no refit), the interaction knobs' refits are not repeated.
    for name in ("cf_variant", "sequence_weight", "history", "alpha", "evidence_c", "popularity"):
        grid[f"{name}_first_pass"] = grid.pop(name)
    cf_knob("cf_variant", [(v, v) for v in usable], "variant")
    variant_strength()  # when the second pass moved to a variant whose ridge was never searched
    ease_ridge_and_form()
    cf_knob("sequence_weight", [(f"{w:g}", w) for w in sequence_weights], "sequence_weight")
    for name in ("history", "alpha", "evidence_c", "popularity"):
        blend(name)

    h = best_config.hybrid
    scores = ev.run([
        ("hybrid", best_config, True),
        ("cf", replace(best_config, hybrid=replace(h, alpha=1.0, evidence_c=0.0, pop_weight=0.0)), True),
        ("content", replace(best_config, hybrid=replace(h, alpha=0.0, pop_weight=0.0)), False),
        ("popularity", replace(best_config, hybrid=replace(h, pop_weight=POPULARITY_ONLY, n_popular=train.n_items)),
         False),
    ])
    if scores["popularity"]["ndcg@10"] > scores["hybrid"]["ndcg@10"]:
        # serve the popularity ranking itself: the blend's popularity term outweighs every other
        best_config = replace(best_config, hybrid=replace(h, pop_weight=POPULARITY_ONLY))
        scores["hybrid"] = scores["popularity"]
        chosen["fallback"] = "popularity"

    metrics: dict[str, Any] = {"users": float(len(first.users)), "holdout_events": float(first.holdout_events),
                               "sampled_events": float(first.sampled_events),
                               "holdout": {"kind": first.kind, "folds": len(ev.folds),
                                           "window_days": first.window_days},
                               "grid": grid, "chosen": chosen}
    for name, m in scores.items():
        metrics.update({f"{name}.{key}": value for key, value in m.items()})
    hb = best_config.hybrid
    metrics.update(alpha=hb.alpha, sequence_weight=best_config.cf.sequence_weight, evidence_c=hb.evidence_c)
    ev.timings["total"] = time.perf_counter() - t0
    return ValidationResult(config=best_config, metrics=metrics, timings=ev.timings)
