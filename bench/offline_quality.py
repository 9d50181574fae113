"""Offline quality on MovieLens 100K: our recommenders vs implicit's ItemKNN/ALS and EASE.

    python bench/offline_quality.py [PATH_TO_ML_100K] [--tune] [--no-peers]

Split: each user's last 20% of ratings by time is TEST; everything else is TRAIN. Every choice
(our alpha / CF variant / blend defaults, the peers' hyper-parameters, EASE's lambda) is made on a
validation split carved out of TRAIN the same way (each user's last 20% of training ratings); TEST
is touched once per method. The ranking of each user excludes their TRAIN items. Prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

# implicit converts a matrix of its own to CSR inside recommend() and warns about it on every call
warnings.filterwarnings("ignore", message="Method expects CSR input")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.eventlog import TYPE_CODE, EventLog  # noqa: E402
from app.recommend.algo_blend import HybridConfig, blend_dense, top_n  # noqa: E402
from app.recommend.algo_content import content_neighbours, fit_content  # noqa: E402
from app.recommend.algo_metrics import ranking_metrics, time_holdout  # noqa: E402
from app.recommend.algo_neighbours import Neighbours  # noqa: E402
from app.recommend.algo_sequence import sequence_neighbours  # noqa: E402
from app.recommend.algo_similarity import CF_VARIANTS, cf_neighbours  # noqa: E402
from app.recommend.algo_validate import (  # noqa: E402
    RecommenderConfig,
    fit,
    holdout_targets,
    validate,
)

K_CONTENT = 100
T = TypeVar("T")


def load_movielens(path: Path) -> tuple[EventLog, list[str]]:
    """Ratings as `rating` events; one document (title + genre tokens) per movie."""
    data = np.loadtxt(path / "u.data", dtype=np.int64)
    genres = [line.split("|")[0] for line in (path / "u.genre").read_text("latin-1").splitlines() if line]
    items = [line.split("|") for line in (path / "u.item").read_text("latin-1").splitlines() if line]
    docs = []
    for row in items:
        flags = row[5:5 + len(genres)]
        cats = [g for g, f in zip(genres, flags, strict=True) if f == "1"]
        tokens = ("cat_" + g.lower().replace("'", "").replace("-", "_") for g in cats)
        docs.append(" ".join([row[1], *tokens]))
    n = len(data)
    log = EventLog(
        user=(data[:, 0] - 1).astype(np.int32),
        item=(data[:, 1] - 1).astype(np.int32),
        type=np.full(n, TYPE_CODE["rating"], dtype=np.int8),
        value=data[:, 2].astype(np.float32),
        price=np.full(n, np.nan, dtype=np.float32),
        ts=data[:, 3].astype(np.float64),
        session=np.full(n, -1, dtype=np.int32),
        user_ids=np.array([str(u) for u in range(1, data[:, 0].max() + 1)], dtype=object),
        item_ids=np.array([r[0] for r in items], dtype=object),
    )
    return log, docs


# ----------------------------------------------------------------------------------------- evaluation
class Split:
    """A train/test pair with the targets every method is scored against."""

    def __init__(self, log: EventLog, test_fraction: float = 0.2) -> None:
        mask = time_holdout(log, test_fraction)
        self.train, self.test = log.select(~mask), log.select(mask)
        relevant, seen = holdout_targets(self.train, self.test, RecommenderConfig().interaction)
        self.users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        self.relevant, self.seen = relevant[self.users], seen[self.users]
        tr = self.train
        self.binary = sp.csr_matrix(
            (np.ones(len(tr), dtype=np.float32), (tr.user, tr.item)), shape=(tr.n_users, tr.n_items)
        )
        self.binary.data[:] = 1.0

    def score(self, total: np.ndarray) -> dict[str, float]:
        """total float[len(users), n_items] (already -inf on seen items) -> metrics."""
        return ranking_metrics(top_n(total, 20), self.relevant, (10, 20))

    def score_top(self, top: np.ndarray) -> dict[str, float]:
        return ranking_metrics(top, self.relevant, (10, 20))

    def mask_seen(self, total: np.ndarray) -> np.ndarray:
        ex = sp.coo_matrix(self.seen)
        total[ex.row, ex.col] = -np.inf
        return total


def ours(split: Split, content: Neighbours, config: RecommenderConfig) -> dict[str, dict[str, float]]:
    """Fit on split.train with `config`; metrics for popularity, each CF variant, content, hybrid."""
    tr, n_items = split.train, split.train.n_items
    model = fit(tr, config)
    hist = model.history[split.users]
    ct_raw = (hist @ content.to_csr(n_items)).toarray()
    zero = np.zeros_like(ct_raw)
    h, out = config.hybrid, {}

    def run(cf: Neighbours | None, use_content: bool, hyb: HybridConfig) -> dict[str, float]:
        cf_raw = zero if cf is None else (hist @ cf.to_csr(n_items)).toarray()
        ct = ct_raw if use_content else zero
        return split.score(blend_dense(cf_raw, ct, model.evidence, model.popularity, hyb, split.seen))

    cf_only = replace(h, alpha=1.0, evidence_c=0.0, pop_weight=0.0)
    out["popularity (decayed)"] = run(None, False, replace(h, pop_weight=1.0, n_popular=n_items))
    out["ours content (TF-IDF title+genres)"] = run(None, True, replace(h, alpha=0.0, pop_weight=0.0))
    for variant in CF_VARIANTS:
        nb = cf_neighbours(model.interactions, replace(config.cf, variant=variant))
        out[f"ours CF {variant} alone"] = run(nb, False, cf_only)
    seq = sequence_neighbours(tr, config.cf.k, config.cf.sequence_window, config.cf.sequence_max_gap_days)
    out["ours CF sequence only"] = run(seq, False, cf_only)
    served = f"ours CF served ({config.cf.variant} + sequence {config.cf.sequence_weight:g})"
    out[served] = run(model.cf, False, cf_only)
    out["ours HYBRID"] = run(model.cf, True, h)
    return out


# ------------------------------------------------------------------------------------------------ peers
def peer_itemknn(split: Split, k: int) -> dict[str, float]:
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=k, num_threads=1)
    model.fit(split.binary, show_progress=False)
    ids, _ = model.recommend(split.users, split.binary[split.users], N=20, filter_already_liked_items=True)
    return split.score_top(np.asarray(ids, dtype=np.int32))


def peer_als(split: Split, factors: int, reg: float, alpha: float) -> dict[str, float]:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15,
                                    num_threads=1, random_state=42)
    model.fit(split.binary, show_progress=False)
    ids, _ = model.recommend(split.users, split.binary[split.users], N=20, filter_already_liked_items=True)
    return split.score_top(np.asarray(ids, dtype=np.int32))


def peer_ease(split: Split, lam: float) -> dict[str, float]:
    x = split.binary.toarray().astype(np.float64)
    g = x.T @ x
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return split.score(split.mask_seen(x[split.users] @ b))


Peer = Callable[[Split, Any], dict[str, float]]
PEER_GRIDS: dict[str, tuple[str, list[Any], Peer]] = {
    "peer implicit ItemKNN cosine": ("K", [20, 50, 100, 200, 400], peer_itemknn),
    "peer implicit ALS (64f, 15 it)": (
        "reg,alpha", list(itertools.product([0.1, 1.0, 10.0, 30.0, 100.0], [1.0, 5.0, 20.0])),
        lambda s, p: peer_als(s, 64, p[0], p[1]),
    ),
    "peer EASE (binary, full B)": ("lambda", [50, 100, 200, 400, 800, 1600], peer_ease),
}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", nargs="?", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    parser.add_argument("--tune", action="store_true", help="coordinate-search our defaults on validation")
    parser.add_argument("--no-peers", action="store_true", help="skip implicit/EASE peers (quick run)")
    args = parser.parse_args()
    with threadpool_limits(1):
        run(Path(args.path), args.tune, not args.no_peers)


class Clock:
    """Wall and CPU seconds per named stage (CPU is what the box owes us when others share it)."""

    def __init__(self) -> None:
        self.stages: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.stages[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        return out


def run(path: Path, tune: bool, peers: bool) -> None:
    clock = Clock()
    log, docs = clock("load + split", lambda: load_movielens(path))
    outer = Split(log)
    inner = Split(outer.train)  # validation carved out of TRAIN
    config = tune_defaults(inner, _content(docs), RecommenderConfig()) if tune else RecommenderConfig()

    # the rebuild, as the worker runs it: content, validation (choices), final fit on all of TRAIN
    content = clock("build: content TF-IDF + top-k", lambda: _content(docs))
    result = clock("build: validate (variant, sequence weight, alpha, c)",
                   lambda: validate(outer.train, content, config))
    clock("build: final fit", lambda: fit(outer.train, result.config))
    build_wall = sum(w for name, (w, _) in clock.stages.items() if name.startswith("build"))
    build_cpu = sum(c for name, (_, c) in clock.stages.items() if name.startswith("build"))

    rows = clock("evaluate ours on TEST", lambda: ours(outer, content, result.config))
    if peers:
        for name, (label, grid, fn) in PEER_GRIDS.items():
            def tuned(grid: list[Any] = grid, fn: Peer = fn) -> tuple[Any, dict[str, float]]:
                best = max(grid, key=lambda p: fn(inner, p)["ndcg@10"])
                return best, fn(outer, best)
            best, rows[f"{name} [{label}={best}]"] = clock(f"{name} (tune + fit)", tuned)

    chosen = result.config
    print(f"\nMovieLens 100K, per-user time split (last 20% = test): {len(outer.users)} test users, "
          f"{len(outer.train)} train / {len(outer.test)} test ratings")
    print(f"chosen on validation (inside TRAIN): cf={chosen.cf.variant} + sequence "
          f"{chosen.cf.sequence_weight:g}, alpha={chosen.hybrid.alpha:g}, "
          f"evidence_c={chosen.hybrid.evidence_c:g} "
          f"(validation hybrid ndcg@10={result.metrics['hybrid.ndcg@10']:.4f})\n")
    print(f"{'method':62s} {'NDCG@10':>8s} {'Recall@20':>10s} {'Prec@10':>8s}")
    for name, m in rows.items():
        print(f"{name:62s} {m['ndcg@10']:8.4f} {m['recall@20']:10.4f} {m['precision@10']:8.4f}")
    peer_scores = [m["ndcg@10"] for name, m in rows.items() if name.startswith("peer")]
    if peer_scores:
        ratio = rows["ours HYBRID"]["ndcg@10"] / max(peer_scores)
        verdict = "MET" if ratio >= 1.05 else "NOT MET"
        print(f"\nhybrid / best peer NDCG@10 = {ratio:.3f}  (target >= 1.05: {verdict})")
    print(f"\nbuild + validation: {build_wall:.2f} s wall, {build_cpu:.2f} s CPU (target <= 5 s)")
    print(f"{'stage':62s} {'wall s':>8s} {'CPU s':>8s}")
    for name, (wall, cpu) in clock.stages.items():
        print(f"{name:62s} {wall:8.2f} {cpu:8.2f}")
    for name, sec in result.timings.items():
        print(f"{'  validate.' + name:62s} {sec:8.2f}")


def _content(docs: list[str]) -> Neighbours:
    return content_neighbours(fit_content(docs), K_CONTENT)


def hybrid_ndcg(split: Split, content: Neighbours, config: RecommenderConfig) -> float:
    model = fit(split.train, config)
    hist = model.history[split.users]
    n_items = split.train.n_items
    cf_raw = (hist @ model.cf.to_csr(n_items)).toarray()
    ct_raw = (hist @ content.to_csr(n_items)).toarray()
    total = blend_dense(cf_raw, ct_raw, model.evidence, model.popularity, config.hybrid, split.seen)
    return split.score(total)["ndcg@10"]


TUNE_GRID: dict[str, tuple[str, list[float | str]]] = {
    # name: (section, values); the first pass visits them in this order, twice
    "variant": ("cf", ["cosine", "ease", "rp3beta"]),
    "sequence_weight": ("cf", [0.0, 0.3, 0.5, 0.7, 0.85]),
    "history_half_life_events": ("hybrid", [3.0, 5.0, 8.0, 12.0, 20.0, float("inf")]),
    "sequence_window": ("cf", [5, 10, 30, 60]),
    "sequence_max_gap_days": ("cf", [1 / 24, 1.0, float("inf")]),
    "k": ("cf", [50, 100, 200]),
    "ease_lambda": ("cf", [100.0, 200.0, 400.0, 800.0]),
    "rating_scale": ("interaction", [0.0, 0.5, 1.0]),
    "half_life_days": ("interaction", [30.0, 90.0, 365.0, float("inf")]),
    "alpha": ("hybrid", [0.6, 0.8, 0.9, 1.0]),
    "evidence_c": ("hybrid", [0.0, 1.0, 2.0, 5.0]),
    "pop_weight": ("hybrid", [0.0, 0.02, 0.05, 0.1, 0.2]),
    "pop_half_life_days": ("hybrid", [7.0, 30.0, 90.0, float("inf")]),
}


def tune_defaults(split: Split, content: Neighbours, config: RecommenderConfig) -> RecommenderConfig:
    """Coordinate search of our defaults on the validation split carved out of TRAIN (never TEST)."""
    best = hybrid_ndcg(split, content, config)
    print(f"tune: start ndcg@10={best:.4f}")
    for sweep in range(2):
        improved = False
        for name, (section, values) in TUNE_GRID.items():
            for value in values:
                part = getattr(config, section)
                if getattr(part, name) == value:
                    continue
                trial = replace(config, **{section: replace(part, **{name: value})})
                score = hybrid_ndcg(split, content, trial)
                if score > best + 1e-4:
                    best, config, improved = score, trial, True
                    print(f"tune[{sweep}]: {section}.{name}={value} -> ndcg@10={best:.4f}", flush=True)
        if not improved:
            break
    print(f"tune: final {config}")
    return config


if __name__ == "__main__":
    main()
