"""fit() and validate() end to end on a small synthetic shop with clustered tastes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from app.eventlog import EventLog
from app.recommend.algo_content import content_neighbours, fit_content
from app.recommend.algo_grid import ALPHAS, EASE_DROPOUTS
from app.recommend.algo_similarity import CF_VARIANTS
from app.recommend.algo_validate import RecommenderConfig, fit, validate

N_ITEMS, N_CLUSTERS = 40, 4


def _shop(seed: int = 0) -> tuple[EventLog, list[str]]:
    rng = np.random.default_rng(seed)
    users, items, types, ts = [], [], [], []
    for u in range(80):
        cluster = u % N_CLUSTERS
        own = rng.permutation(np.arange(cluster, N_ITEMS, N_CLUSTERS))[:8]
        for step, item in enumerate(own):
            users.append(f"u{u}")
            items.append(f"i{item}")
            types.append(str(rng.choice(["view", "click", "add_to_cart", "purchase"])))
            ts.append(1e9 + u * 1000 + step * 60.0)
    universe = [f"i{i}" for i in range(N_ITEMS)]
    docs = [f"thing{i} cat_c{i % N_CLUSTERS}" for i in range(N_ITEMS)]
    return EventLog.from_records(users, items, types, ts, item_universe=universe), docs


def test_validate_chooses_from_the_grids_and_beats_popularity() -> None:
    log, docs = _shop()
    content = content_neighbours(fit_content(docs), k=10)
    config = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10))
    result = validate(log, content, config)
    assert result.config.cf.variant in CF_VARIANTS
    assert result.config.hybrid.alpha in ALPHAS
    assert result.metrics["alpha"] == result.config.hybrid.alpha
    json.dumps(result.metrics, allow_nan=False)  # storable as-is in model_runs
    numbers = {k: v for k, v in result.metrics.items() if not isinstance(v, dict)}
    assert all(isinstance(v, float) and math.isfinite(v) for v in numbers.values())
    for prefix in ("popularity", "content", "cf", "hybrid"):
        for metric in ("precision@10", "recall@20", "f1@10", "ndcg@10"):
            assert f"{prefix}.{metric}" in result.metrics
    # every knob tried is recorded with the figure of each value, and the kept value is one of them
    grid, chosen = result.metrics["grid"], result.metrics["chosen"]
    assert set(grid["cf_variant"]) == set(CF_VARIANTS)
    assert {"history", "sequence_weight", "neighbours_k", "alpha", "evidence_c", "popularity"} <= set(grid)
    for knob, values in grid.items():
        if knob in chosen:
            assert chosen[knob] in values
    assert chosen["alpha"] == f"{result.config.hybrid.alpha:g}"
    # tastes are clustered, so behaviour-based scoring must beat raw popularity clearly
    assert result.metrics["hybrid.ndcg@10"] > result.metrics["popularity.ndcg@10"] + 0.1
    assert result.metrics["users"] == 80
    assert set(result.timings) >= {"prepare", "cf_fit", "score", "total"}


def test_validate_skips_ease_above_its_limit() -> None:
    log, docs = _shop(1)
    content = content_neighbours(fit_content(docs), k=10)
    base = RecommenderConfig()
    config = replace(base, cf=replace(base.cf, k=10, ease_max_items=10))
    result = validate(log, content, config, alphas=(0.5, 1.0))
    assert result.config.cf.variant != "ease"
    assert "ease" not in result.metrics["grid"]["cf_variant"]
    with pytest.raises(ValueError, match="none of the CF variants"):
        validate(log, content, config, variants=("ease",))


def _shop_with_blockbusters(seed: int, n_users: int = 120, own: int = 6, hits: int = 5) -> EventLog:
    """Clustered tastes as in `_shop`, and each shopper also buys `hits` of 6 items everybody buys."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        mine = rng.permutation(np.arange(6 + u % N_CLUSTERS, N_ITEMS, N_CLUSTERS))[:own]
        for step, item in enumerate(rng.permutation([*mine, *rng.permutation(6)[:hits]])):
            users.append(f"u{u}")
            items.append(f"i{item}")
            ts.append(1e9 + u * 1000 + step * 60.0)
    return EventLog.from_records(users, items, ["purchase"] * len(users), ts,
                                 item_universe=[f"i{i}" for i in range(N_ITEMS)])


def test_validate_weighs_eases_dropout_emphasis_only_for_ease() -> None:
    log = _shop_with_blockbusters(2)  # the emphasis (p = 0.75) validates best on this one
    content = content_neighbours(fit_content([f"thing{i}" for i in range(N_ITEMS)]), k=10)
    config = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10))
    result = validate(log, content, config, alphas=(0.5, 1.0), variants=("ease",))
    grid, chosen, cf = result.metrics["grid"], result.metrics["chosen"], result.config.cf
    assert list(grid["ease_dropout"]) == [f"{c:g}" for c in EASE_DROPOUTS]
    assert cf.ease_dropout in EASE_DROPOUTS and cf.ease_dropout > 0
    assert chosen["ease_dropout"] == f"{cf.ease_dropout:g}"
    assert cf.ease_lambda == float(chosen["ease_lambda"])  # the flat ridge stays as its own search left it
    # then the form: the constraint or the full rank, whose emphasis is searched again when it wins
    assert set(grid["ease_form"]) == {"zero_diagonal", "full_rank"}
    assert chosen["ease_form"] == ("zero_diagonal" if cf.ease_zero_diagonal else "full_rank")
    assert ("ease_dropout_zero_diagonal" in grid) == (not cf.ease_zero_diagonal)
    other = validate(log, content, config, alphas=(0.5, 1.0), variants=("cosine", "rp3beta"))
    assert not {"ease_dropout", "ease_form"} & set(other.metrics["grid"])
    assert other.config.cf.ease_dropout == 0.0 and other.config.cf.ease_zero_diagonal


def test_validate_drops_eases_constraint_where_shoppers_move_on_to_the_long_tail() -> None:
    """Each shopper buys their cluster's best sellers first and its less known items later: the
    constraint's column scale (1 / P[j, j], which grows with an item's mass) lifts the best sellers,
    which that future does not hold, and EDLAE's full rank validates better."""
    rng = np.random.default_rng(2)
    n_items = 60
    users, items, ts = [], [], []
    for u in range(160):
        pool = np.arange(u % N_CLUSTERS, n_items, N_CLUSTERS)
        odds = 1.0 / np.arange(1, len(pool) + 1) ** 1.2  # the cluster's first items sell most
        for step, item in enumerate(sorted(rng.choice(pool, size=8, replace=False, p=odds / odds.sum()))):
            users.append(f"u{u}")
            items.append(f"i{item}")
            ts.append(1e9 + u * 1000 + step * 60.0)
    log = EventLog.from_records(users, items, ["purchase"] * len(users), ts,
                                item_universe=[f"i{i}" for i in range(n_items)])
    content = content_neighbours(fit_content([f"thing{i}" for i in range(n_items)]), k=10)
    config = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10))
    result = validate(log, content, config, alphas=(0.5, 1.0), variants=("ease",))
    grid, chosen = result.metrics["grid"], result.metrics["chosen"]
    assert grid["ease_form"]["full_rank"] > grid["ease_form"]["zero_diagonal"]
    assert chosen["ease_form"] == "full_rank" and not result.config.cf.ease_zero_diagonal
    # the emphasis was searched for each form; the full rank's figures are the ones kept
    assert set(grid["ease_dropout_zero_diagonal"]) == set(grid["ease_dropout"]) == {f"{c:g}" for c in EASE_DROPOUTS}
    assert grid["ease_dropout"][chosen["ease_dropout"]] == max(grid["ease_dropout"].values())


def test_fit_shapes() -> None:
    log, _ = _shop(2)
    model = fit(log, RecommenderConfig())
    assert model.interactions.shape == (80, N_ITEMS) == model.history.shape
    assert model.cf.indices.shape == (N_ITEMS, RecommenderConfig().cf.k)
    assert model.popularity.shape == (N_ITEMS,) and model.evidence.shape == (N_ITEMS,)
    users_per_item = np.bincount(np.unique(log.user * N_ITEMS + log.item) % N_ITEMS, minlength=N_ITEMS)
    np.testing.assert_array_equal(model.evidence, users_per_item)
    assert model.evidence.sum() == 80 * 8


def test_dense_and_candidate_scoring_give_the_same_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large catalogs score each user's candidates only; the metrics are those of dense scoring
    (up to which of several tied items fills a list's last places)."""
    from app.recommend import algo_validate_scoring

    log, docs = _shop(2)
    content = content_neighbours(fit_content(docs), k=10)
    config = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10))
    dense = validate(log, content, config)
    monkeypatch.setattr(algo_validate_scoring, "DENSE_BYTES", 0)
    sparse = validate(log, content, config)
    assert sparse.config == dense.config
    numeric = [k for k, v in dense.metrics.items() if not isinstance(v, dict)]
    assert {k: sparse.metrics[k] for k in numeric} == pytest.approx({k: dense.metrics[k] for k in numeric}, abs=0.02)
    assert sparse.metrics["hybrid.ndcg@10"] == pytest.approx(dense.metrics["hybrid.ndcg@10"], abs=1e-9)


def test_folds_side_by_side_choose_what_folds_in_turn_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two folds run on threads: the result is the sequential one, number for number."""
    from app.recommend import algo_validate

    log, docs = _shop(3)
    content = content_neighbours(fit_content(docs), k=10)
    config = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10))
    monkeypatch.setattr(algo_validate, "BLOCK_THREADS", 1)
    in_turn = validate(log, content, config)
    monkeypatch.setattr(algo_validate, "BLOCK_THREADS", 2)
    side_by_side = validate(log, content, config)
    assert side_by_side.metrics["holdout"]["folds"] == 2
    assert side_by_side.config == in_turn.config
    assert side_by_side.metrics == in_turn.metrics


def _validation_fold(seed: int) -> Any:
    """`_shop(seed)`'s first validation fold (an `algo_validate._Evaluator`), content at k = 10."""
    from app.recommend import algo_validate
    from app.recommend.algo_holdout import validation_holdout

    log, docs = _shop(seed)
    content = content_neighbours(fit_content(docs), k=10)
    fold = algo_validate._fold(log, validation_holdout(log, seed=0), content, 5_000, 0)
    assert fold is not None
    return fold


def test_evaluator_fits_once_for_every_sequence_weight_and_keeps_the_last_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sequence weights blend one CF fit; the CF matrix evicted is the least recently used one,
    so the search's current best, asked for after every candidate, is not fitted again."""
    from app.recommend import algo_validate

    fold = _validation_fold(4)
    fits: list[object] = []
    real = algo_validate.cf_neighbours
    monkeypatch.setattr(algo_validate, "cf_neighbours", lambda x, cf: fits.append(cf) or real(x, cf))
    base = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10, variant="cosine"))

    def with_cf(**fields: object) -> RecommenderConfig:
        return replace(base, cf=replace(base.cf, **fields))

    best = fold.cf(with_cf(sequence_weight=0.0))
    others = [fold.cf(with_cf(sequence_weight=w)) for w in (0.5, 0.85)]
    assert len(fits) == 1
    assert all(m.shape == best.shape for m in others) and (others[0] != best).nnz > 0
    assert fold.cf(with_cf(sequence_weight=0.0)) is best  # used again: now the most recent
    fold.cf(with_cf(shrink=1.0))  # a fourth matrix evicts the least recently used (0.5), not the first made
    assert len(fits) == 2
    assert fold.cf(with_cf(sequence_weight=0.0)) is best
    assert len(fits) == 2


@pytest.mark.parametrize("variant", ["cosine", "rp3beta", "als", "ease"])
def test_evaluator_truncates_a_wider_fit_for_a_smaller_neighbour_count(
    monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """A fit's rows are sorted by score, so its first k entries are the fit at k: the neighbour-count
    knob truncates the search's best instead of refitting, and scores what a fit at k would serve.
    EASE keeps its k by magnitude, so it is refitted."""
    from app.recommend import algo_validate
    from app.recommend.algo_similarity import cf_neighbours

    fold = _validation_fold(6)
    fits: list[int] = []
    real = algo_validate.cf_neighbours
    monkeypatch.setattr(algo_validate, "cf_neighbours", lambda x, cf: fits.append(cf.k) or real(x, cf))
    base = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, variant=variant, k=12,
                                                         sequence_weight=0.0))
    fold.cf(base)
    small = replace(base, cf=replace(base.cf, k=4))
    truncated = fold.cf(small)
    x, _ = fold.matrix(small.interaction)
    fresh = cf_neighbours(x, small.cf).to_csr(fold.train.n_items)
    assert fits == ([12, 4] if variant == "ease" else [12])
    assert truncated.shape == fresh.shape and (np.diff(truncated.indptr) <= 4).all()
    # the same top 4 of every row, up to ties at the fourth place
    for row in range(truncated.shape[0]):
        got = np.sort(truncated.data[truncated.indptr[row]:truncated.indptr[row + 1]])
        want = np.sort(fresh.data[fresh.indptr[row]:fresh.indptr[row + 1]])
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert truncated.nnz > 0


def test_evaluator_builds_one_scorer_per_popularity_flavour_whatever_the_trial_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The popularity knob's trials alternate flavours (all-time, recent, ...); each scorer build
    redoes the candidates, so trials are grouped by scorer: one build per flavour, the scorer in hand
    none, and every trial scores what it scores alone."""
    from app.recommend import algo_validate

    fold = _validation_fold(5)
    base = replace(RecommenderConfig(), cf=replace(RecommenderConfig().cf, k=10, variant="cosine"))

    def pop(weight: float, half_life: float) -> RecommenderConfig:
        return replace(base, hybrid=replace(base.hybrid, pop_weight=weight, pop_half_life_days=half_life))

    trials = [(f"{w}_{hl}", pop(w, hl), True) for w in (0.05, 0.2, 0.5, 1.0) for hl in (math.inf, 2.0)]
    trials.insert(0, ("off", pop(0.0, 30.0), True))
    alone = {name: fold.run([(name, config, use_cf)])[name] for name, config, use_cf in trials}
    builds: list[object] = []
    real = algo_validate.make_scorer
    monkeypatch.setattr(algo_validate, "make_scorer", lambda *a: builds.append(a) or real(*a))
    together = fold.run(trials)
    assert list(together) == [name for name, _, _ in trials]
    assert together == alone
    assert len(builds) == 2  # "off" (30 days) and all-time; recent, scored alone last, was in hand


def _sparse_shop(seed: int, share_popular: float, n_users: int = 600, n_items: int = 60) -> tuple[EventLog, list[str]]:
    """Shoppers with 2-4 purchases over 100 days, each a pick from what everyone buys (a Zipf law) with
    probability `share_popular`, else from their own cluster: the sparse-purchase shape."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 1.1
    pop /= pop.sum()
    users, items, types, ts = [], [], [], []
    for u in range(n_users):
        own = np.arange(u % N_CLUSTERS, n_items, N_CLUSTERS)
        for _ in range(int(rng.integers(2, 5))):
            item = rng.choice(n_items, p=pop) if rng.random() < share_popular else rng.choice(own)
            users.append(f"u{u}")
            items.append(f"i{item}")
            types.append("purchase")
            ts.append(1e9 + rng.uniform(0, 100 * 86_400))
    docs = [f"thing{i} cat_c{i % N_CLUSTERS}" for i in range(n_items)]
    return EventLog.from_records(users, items, types, ts, item_universe=[f"i{i}" for i in range(n_items)]), docs


def test_a_sparse_shop_leans_on_popularity_harder_than_the_old_grid_allowed() -> None:
    """A heavy popularity weight (0.5 or 1) beats both every lighter one and popularity served alone."""
    log, docs = _sparse_shop(0, share_popular=0.4)
    result = validate(log, content_neighbours(fit_content(docs), k=10))
    tried = {**result.metrics["grid"]["popularity_first_pass"], **result.metrics["grid"]["popularity"]}
    assert {"0.5", "1"} <= {label.split("_")[0] for label in tried}
    assert result.config.hybrid.pop_weight >= 0.5
    lighter = max(v for label, v in tried.items() if label == "off" or float(label.split("_")[0]) <= 0.2)
    assert result.metrics["hybrid.ndcg@10"] > lighter
    assert result.metrics["hybrid.ndcg@10"] > result.metrics["popularity.ndcg@10"]


def test_a_shop_whose_picks_ignore_popularity_does_not_lean_on_it() -> None:
    log, docs = _sparse_shop(1, share_popular=0.0)  # every pick from the shopper's own cluster
    result = validate(log, content_neighbours(fit_content(docs), k=10))
    assert result.config.hybrid.pop_weight <= 0.05
    assert result.metrics["hybrid.ndcg@10"] > 2 * result.metrics["popularity.ndcg@10"]
