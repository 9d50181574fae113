"""Offline propensity benchmark: our model beside simple peers on the same cut-offs, plus scale.

    .venv/bin/python bench/offline_propensity.py [--ml-path /work/shared/data/ml-100k/u.data]
        [--data /work/shared/data] [--users 20000] [--million-users 1000000] [--factor-users 100000]
        [--skip-scale]

(a) the synthetic shop of ``app.demo.generator`` (targets purchase and churn), (a') online-retail (a
UK gift shop's order lines, Dec 2010 - Dec 2011; ``bench.datasets.online_retail`` reads it from
``--data``) at its natural cut-off: trained on outcomes up to 2011-09-09, evaluated on purchases in
the 30 days after it, (a'') CDNOW (a CD shop's orders 1997-98, from the copy inside ``lifetimes``):
who buys in its last 30 days, June 1998, (b) MovieLens 100K
recast as "does the user rate again within the horizon" (every rating is a purchase; timestamps
shifted so the last rating is just before "now"). Every row is evaluated on the same holdout:
features at ``now - h``, labels in ``[now - h, now)``; every trained row (ours and the RFM
logistic regression) is fit on the same stacked training cut-offs ``now - 2h, now - 3h, ...``.
Peers: recency only (score = ∓days since the last event), frequency only (events ever), each
oriented by its sign on the training rows, and a
logistic regression on log-damped recency, frequency and monetary value.

(c) time and peak memory (``ru_maxrss``) of features + scoring for a numpy-generated log of
``--million-users`` users (~10 events each), and of precomputing top-3 factors for
``--factor-users`` users. Runs in a child process so the peak is its own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.eventlog import TYPE_CODE, EventLog
from app.propensity import (
    DAY,
    FeatureSpec,
    PropensityConfig,
    Target,
    active_before,
    build_features,
    factor_arrays,
    fit_model,
    labels,
    score_users,
    train_propensity,
)
from bench.datasets import cdnow, online_retail

NOW = 1_750_000_000.0
RETAIL_CUTOFF = datetime(2011, 9, 9, tzinfo=UTC).timestamp()
CDNOW_END = datetime(1998, 7, 1, tzinfo=UTC).timestamp()  # the day after its last order


def synthetic_shop(n_users: int, seed: int = 7) -> tuple[EventLog, float, list[list[str]], list[dict[str, Any]]]:
    from app.demo.generator import generate_shop, to_event_log

    shop = generate_shop(n_users=n_users, n_items=2000, days=180, seed=seed, now=NOW)
    cats = [list(it["categories"]) for it in shop.items]
    return to_event_log(shop), shop.truth.now, cats, [u["attributes"] for u in shop.users]


def movielens(path: Path) -> tuple[EventLog, float, list[list[str]] | None]:
    raw = np.loadtxt(path, dtype=np.int64)
    users, u_idx = np.unique(raw[:, 0], return_inverse=True)
    items, i_idx = np.unique(raw[:, 1], return_inverse=True)
    ts = raw[:, 3].astype(np.float64)
    ts += NOW - 1.0 - ts.max()  # the last rating one second before "now"
    n = len(raw)
    nan = np.full(n, np.nan, dtype=np.float32)
    log = EventLog(
        user=u_idx.astype(np.int32), item=i_idx.astype(np.int32),
        type=np.full(n, TYPE_CODE["purchase"], dtype=np.int8), value=nan, price=nan, ts=ts,
        session=np.full(n, -1, dtype=np.int32), user_ids=users.astype(str).astype(object),
        item_ids=items.astype(str).astype(object),
    )  # fmt: skip
    cats = None
    item_file, genre_file = path.with_name("u.item"), path.with_name("u.genre")
    if item_file.exists() and genre_file.exists():
        genres = [line.split("|")[0] for line in genre_file.read_text(encoding="latin-1").splitlines() if line]
        by_id = {}
        for line in item_file.read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            by_id[int(parts[0])] = [g for g, flag in zip(genres, parts[5:], strict=False) if flag == "1"]
        cats = [by_id.get(int(i), []) for i in items]
    return log, NOW, cats


def _stacked(
    log: EventLog, ends: list[float], horizon: float, target: Target, spec: FeatureSpec, cats: Any, attrs: Any
) -> tuple[NDArray[np.float32], NDArray[np.bool_], list[str]]:
    xs, ys = [], []
    names: list[str] = []
    for cutoff in ends:
        pop = active_before(log, cutoff)
        if not pop.any():
            continue
        fm = build_features(log, cutoff, spec, item_categories=cats, user_attributes=attrs)
        xs.append(fm.X[pop])
        ys.append(labels(log, cutoff, horizon, target, cats)[pop])
        names = fm.names
    return np.vstack(xs), np.concatenate(ys), names


def _row(name: str, y: NDArray[np.bool_], score: NDArray[np.float64], proba: bool) -> dict[str, Any]:
    return {
        "model": name,
        "auc": float(roc_auc_score(y, score)),
        "ap": float(average_precision_score(y, score)),
        "brier": float(brier_score_loss(y, score)) if proba else None,
    }


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def compare(dataset: str, log: EventLog, now: float, target_text: str, cats: Any, attrs: Any) -> list[dict[str, Any]]:
    config = PropensityConfig()
    target, h = Target.parse(target_text), config.horizon_days
    t0 = time.perf_counter()
    result = train_propensity(log, now, target, config=config, item_categories=cats, user_attributes=attrs)
    seconds = time.perf_counter() - t0
    m = result.metrics
    spec = FeatureSpec(category=target.category)
    train_ends = [now - (2 + k) * h * DAY for k in range(config.n_train_windows)]
    Xtr, ytr, names = _stacked(log, train_ends, h, target, spec, cats, None)
    Xev, yev, _ = _stacked(log, [now - h * DAY], h, target, spec, cats, None)
    col = {n: k for k, n in enumerate(names)}
    rfm = [col["days_since_last_event"], col["events_total"], col["revenue_total"]]
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    lr.fit(np.log1p(Xtr[:, rfm]), ytr)

    def oriented(column: str) -> NDArray[np.float64]:
        # One-feature peers point whichever way their training AUC says (recency predicts churn upwards).
        train, ev = Xtr[:, col[column]].astype(np.float64), Xev[:, col[column]].astype(np.float64)
        return ev if roc_auc_score(ytr, train) >= 0.5 else -ev

    rows = [
        {
            "model": f"ours ({m['holdout_model']})",
            "auc": m["auc"],
            "ap": m["average_precision"],
            "brier": m["brier"],
        },
        _row("recency only", yev, oriented("days_since_last_event"), False),
        _row("frequency only", yev, oriented("events_total"), False),
        _row("RFM logistic", yev, lr.predict_proba(np.log1p(Xev[:, rfm]))[:, 1], True),
        {"model": "base rate", "auc": 0.5, "ap": m["base_rate"], "brier": m["brier_base_rate"]},
    ]
    best_peer = max(r["auc"] for r in rows[1:4])
    print(
        f"\n## {dataset} — target {target_text}, horizon {h:g} d: holdout n={m['n']} "
        f"positives={m['positives']} base rate={m['base_rate']:.3f}; train rows={m['holdout_train_rows']} "
        f"(positives {m['holdout_train_positives']}); train+eval+refit {seconds:.1f} s"
    )
    print(f"{'model':<22}{'AUC':>8}{'AP':>8}{'Brier':>9}")
    for r in rows:
        brier = f"{r['brier']:.4f}" if r["brier"] is not None else "-"
        print(f"{r['model']:<22}{r['auc']:>8.4f}{r['ap']:>8.4f}{brier:>9}")
    cycle = m.get("purchase_cycle")
    if cycle:
        print(f"purchase-cycle features {'kept' if cycle['kept'] else 'dropped'} by validation a horizon earlier "
              f"(AUC with {_fmt(cycle['validation_auc_with'])} / without {_fmt(cycle['validation_auc_without'])})")
    auc_ok = m["auc"] >= best_peer + 0.01
    brier_ok = m["brier"] < m["brier_base_rate"]
    print(
        f"AUC margin over best peer {m['auc'] - best_peer:+.4f} ({'PASS' if auc_ok else 'FAIL'} >= +0.01); "
        f"Brier {m['brier']:.4f} vs base rate {m['brier_base_rate']:.4f} "
        f"({'PASS' if brier_ok else 'FAIL'}); ECE {m['expected_calibration_error']:.4f}; "
        f"F1 {m['f1']:.3f} at p>={m['threshold']:.3f}"
    )
    return rows


def numpy_log(n_users: int, seed: int = 0, days: float = 180.0) -> EventLog:
    """~10 events per user: log-normal activity, uniform times within a per-user active span, a
    purchase probability that rises with activity and recent carts; item ids Zipf over 10k items."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(1.8, 0.9, n_users)
    counts = rng.poisson(activity * 10.0 / np.exp(1.8 + 0.9**2 / 2))
    user = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    n = len(user)
    first = rng.uniform(0, days, n_users)
    last = np.minimum(days, first + rng.exponential(90.0, n_users))
    ts = NOW - days * DAY + (first[user] + rng.random(n) * (last - first)[user]) * DAY
    types = rng.choice([0, 1, 2, 3, 4, 8], n, p=[0.62, 0.18, 0.1, 0.03, 0.05, 0.02]).astype(np.int8)
    n_items = 10_000
    item = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1).astype(np.int32)
    price = np.where(types >= 2, rng.lognormal(3.0, 0.7, n), np.nan).astype(np.float32)
    return EventLog(
        user=user, item=item, type=types, value=np.full(n, np.nan, np.float32), price=price, ts=ts,
        session=np.full(n, -1, np.int32), user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(n_items).astype(str).astype(object),
    )  # fmt: skip


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scale(n_users: int, factor_users: int) -> None:
    t = time.perf_counter()
    log = numpy_log(n_users)
    print(
        f"\n## scale: {n_users:,} users, {len(log):,} events "
        f"(log built in {time.perf_counter() - t:.1f} s, peak RSS {_rss_mb():.0f} MB)"
    )
    spec, h = FeatureSpec(), 30.0
    cutoff = NOW - h * DAY
    t = time.perf_counter()
    fm = build_features(log, cutoff, spec)
    train_feat = time.perf_counter() - t
    pop = np.flatnonzero(active_before(log, cutoff))
    rows = np.random.default_rng(1).choice(pop, min(50_000, len(pop)), replace=False)
    y = labels(log, cutoff, h, "purchase")[rows]
    t = time.perf_counter()
    model = fit_model(fm.X[rows], y, target=Target("purchase"), spec=spec, names=fm.names,
                      descriptions=fm.descriptions)  # fmt: skip
    fit_s = time.perf_counter() - t
    del fm
    t = time.perf_counter()
    scores = score_users(model, log, NOW, k=0)
    score_s = time.perf_counter() - t
    print(f"features at one cut-off: {train_feat:.1f} s; fit on {len(rows):,} rows ({model.kind}, "
          f"{model.calibration}): {fit_s:.1f} s")  # fmt: skip
    tier_counts = np.bincount(scores.tier, minlength=3).tolist()
    print(
        f"features + scoring of all {n_users:,} users at now: {score_s:.1f} s; "
        f"peak RSS {_rss_mb():.0f} MB; tiers low/medium/high = {tier_counts}"
    )
    fm = build_features(log, NOW, spec)
    subset = np.arange(min(factor_users, n_users))
    t = time.perf_counter()
    factor_arrays(model, fm.X, subset, k=3)
    fac_s = time.perf_counter() - t
    t = time.perf_counter()
    for r in range(20):
        factor_arrays(model, fm.X, np.array([r]), k=3)
    one = (time.perf_counter() - t) / 20
    print(
        f"top-3 factors precomputed for {len(subset):,} users: {fac_s:.1f} s; "
        f"one user: {one * 1000:.1f} ms; peak RSS {_rss_mb():.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ml-path", type=Path, default=Path("/work/shared/data/ml-100k/u.data"))
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--million-users", type=int, default=1_000_000)
    parser.add_argument("--factor-users", type=int, default=100_000)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--scale-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_only:
        scale(args.million_users, args.factor_users)
        return
    log, now, cats, attrs = synthetic_shop(args.users)
    print(f"# synthetic shop: {log.n_users:,} users, {log.n_items:,} items, {len(log):,} events")
    for target in ("purchase", "churn"):
        compare("synthetic shop", log, now, target, cats, attrs)
    if (args.data / "online-retail").exists():
        retail = online_retail(args.data).log
        print(f"\n# online-retail: {retail.n_users:,} customers, {len(retail):,} order lines")
        h = PropensityConfig().horizon_days
        compare("online-retail", retail, RETAIL_CUTOFF + h * DAY, "purchase", None, None)
    else:
        print(f"\n# online-retail not found under {args.data}; skipped")
    orders = cdnow()
    print(f"\n# CDNOW: {orders.n_users:,} customers, {len(orders):,} orders (as shipped inside lifetimes)")
    # predict the last horizon of the data: who buys in June 1998, from the orders before it
    compare("CDNOW", orders, CDNOW_END, "purchase", None, None)
    if args.ml_path.exists():
        ml, ml_now, ml_cats = movielens(args.ml_path)
        print(f"\n# MovieLens 100K: {ml.n_users} users, {len(ml):,} ratings as purchases")
        compare("MovieLens 100K", ml, ml_now, "purchase", ml_cats, None)
    else:
        print(f"\n# MovieLens 100K not found at {args.ml_path}; skipped")
    if not args.skip_scale:
        cmd = [sys.executable, "-u", __file__, "--scale-only", "--million-users", str(args.million_users),
               "--factor-users", str(args.factor_users)]  # fmt: skip
        subprocess.run(cmd, check=True)  # its own process: ru_maxrss is its own peak


if __name__ == "__main__":
    main()
