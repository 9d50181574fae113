"""Served-quality estimate without servers: the rebuild's validation and fit, scored the way serving scores.

    python bench/quality_offline.py [--data ../shared/data] [--only NAME ...] [--no-peers]

The same data sets, splits and peers as `bench/quality.py`, but our model is fitted and scored in
process (`validate` -> `fit` -> `score_block`, the functions the serving path is tested equal to), so
a change to the algorithms can be judged on every shape in minutes. `bench/quality.py` is the figure
of record: it goes through ingest, the worker and the API's serving code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits

from app.recommend.algo_blend import recommend_batch
from app.recommend.algo_content import content_neighbours, fit_content
from app.recommend.algo_metrics import ranking_metrics, time_holdout
from app.recommend.algo_validate import fit, user_histories, validate
from bench import peers
from bench.datasets import DATASETS, Dataset, Split, global_cut, load, random_holdout

ROOT = Path(__file__).resolve().parents[1]


def inner_split(data: Dataset, split: Split) -> Split:
    """A validation split carved out of training the way the test was carved out of everything."""
    train = split.train
    if data.split.startswith("per-user"):
        return Split(train, time_holdout(train, 0.2))
    if data.split.startswith("tied"):
        return Split(train, random_holdout(train, seed=1))
    share = 0.1 if "10 %" in data.split else 0.2
    return Split(train, global_cut(train, share / (1 - share)))


def ours(data: Dataset, split: Split) -> tuple[dict[str, float], dict[str, Any], float]:
    t = time.perf_counter()
    content = content_neighbours(fit_content(data.docs), k=50)
    result = validate(split.train, content)
    model = fit(split.train, result.config)
    hist = user_histories(split.train, result.config)[split.users]
    top = recommend_batch(hist, model.cf.to_csr(split.train.n_items), content.to_csr(split.train.n_items),
                          model.evidence, model.popularity, result.config.hybrid, 20, exclude=split.seen)
    seconds = time.perf_counter() - t
    return ranking_metrics(top, split.relevant, (10, 20)), result.metrics, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--only", nargs="*", default=list(DATASETS))
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    for name in args.only:
        with threadpool_limits(1):
            data = load(name, Path(args.data))
            split = Split(data.log, data.test)
            ndcg, chosen, seconds = ours(data, split)
            rows = {"ours (offline)": ndcg}
            if not args.no_peers:
                inner = inner_split(data, split)
                for peer, (label, grid, fn) in peers.PEERS.items():
                    if not peers.applicable(peer, split):
                        continue
                    best = max(grid, key=lambda p, fn=fn: ranking_metrics(fn(inner, p), inner.relevant)["ndcg@10"])
                    rows[f"{peer} [{label}={best}]" if label else peer] = ranking_metrics(fn(split, best), split.relevant)
        print(f"\n== {name}: {len(data.log):,} events, {data.log.n_users:,} users, {data.log.n_items:,} items; "
              f"{data.split}; {len(split.users):,} test users; ours {seconds:.1f} s")
        print("chosen:", {k: v for k, v in chosen.items() if "@" not in k})
        for label, m in rows.items():
            print(f"  {label:40s} ndcg@10 {m['ndcg@10']:.4f}  recall@20 {m['recall@20']:.4f}")
        best_peer = max((m["ndcg@10"] for k, m in rows.items() if k != "ours (offline)"), default=float("nan"))
        print(f"  ratio to best peer: {ndcg['ndcg@10'] / best_peer:.3f}", flush=True)


if __name__ == "__main__":
    main()
