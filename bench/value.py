"""Customer value benchmark: 90-day expected revenue per customer against peers, on one cut-off.

    .venv/bin/python bench/value.py [--data ../shared/data] [--horizon 90] [--skip-demo]

(a) `online-retail` (a UK gift shop's orders, Dec 2010 - Dec 2011) at its natural cut-off: history
before 2011-09-09, outcome the next 90 days; (b) CDNOW (a CD shop's orders, 1997-98, as shipped inside
`lifetimes`) cut on 1998-01-01, a year after its cohort's first purchases; (c) the demo shop of `app.demo.generator`, cut a horizon
before its end. Every customer with a purchase before the cut-off is scored by:

- ours: `app.value.train_value` exactly as a rebuild runs it at the cut-off (it validates BTYD and the
  gradient-boosting correction on the horizon before, and serves the better);
- lifetimes BG/NBD + Gamma-Gamma, fit by `lifetimes` on its own daily summary of the same orders;
- "last H days repeated": each customer's revenue of the H days before the cut-off.

Printed: revenue MAE, Spearman, share of the actual revenue made by the top 10 % predicted, and MAE
of the number of transactions (purchase days). Needs the dev extra (lifetimes, pandas).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.eventlog import EventLog
from app.value.algo import KINDS, ValueConfig, train_value
from app.value.algo_metrics import value_metrics
from app.value.summary import DAY, PURCHASE, outcome, summarise
from bench.datasets import cdnow, online_retail


def lifetimes_peer(log: EventLog, cutoff: float, horizon: float, users: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(expected transactions, expected revenue) of `users` by lifetimes' BG/NBD + Gamma-Gamma."""
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    rows = np.flatnonzero((log.type == PURCHASE) & (log.ts < cutoff))
    tx = pd.DataFrame({"customer": log.user[rows], "date": pd.to_datetime(log.ts[rows], unit="s"),
                       "revenue": log.revenue(rows)})
    s = summary_data_from_transaction_data(tx, "customer", "date", monetary_value_col="revenue", freq="D",
                                           observation_period_end=pd.to_datetime(cutoff - 1, unit="s"))
    s = s.reindex(users)
    from lifetimes.utils import ConvergenceError

    bg = None
    for penalizer in (0.0, 0.001, 0.01, 0.1):  # the lifetimes docs' advice when the plain fit does not converge
        try:
            bg = BetaGeoFitter(penalizer_coef=penalizer).fit(s["frequency"], s["recency"], s["T"])
            break
        except ConvergenceError:
            continue
    if bg is None:
        raise RuntimeError("lifetimes' BG/NBD converged with no penalizer tried")
    print(f"   lifetimes BG/NBD converged with penalizer_coef={penalizer}: {bg.params_.round(4).to_dict()}")
    purchases = bg.conditional_expected_number_of_purchases_up_to_time(horizon, s["frequency"], s["recency"], s["T"])
    repeat = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
    gg = GammaGammaFitter(penalizer_coef=0.0).fit(repeat["frequency"], repeat["monetary_value"])
    spend = gg.conditional_expected_average_profit(s["frequency"], s["monetary_value"])
    p = purchases.to_numpy(np.float64)
    return p, p * spend.to_numpy(np.float64)


def compare(name: str, log: EventLog, cutoff: float, horizon: float) -> dict[str, dict[str, float]]:
    history = log.select(log.ts < cutoff)
    t = time.perf_counter()
    result = train_value(history, cutoff, ValueConfig(horizon_days=horizon))
    seconds = time.perf_counter() - t
    users = result.predictions.users
    actual_p, actual_r = outcome(log, cutoff, horizon)
    last_p, last_r = outcome(log, cutoff - horizon * DAY, horizon)
    rows: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {
        f"ours ({result.kind})": (result.predictions.expected_purchases, result.predictions.expected_revenue),
        "lifetimes BG/NBD+GG": lifetimes_peer(history, cutoff, horizon, users),
        f"last {horizon:g} days repeated": (last_p[users], last_r[users]),
    }
    n_customers = len(summarise(history, cutoff))
    print(f"\n## {name}: cut-off {datetime.fromtimestamp(cutoff, UTC):%Y-%m-%d}, horizon {horizon:g} d, "
          f"{n_customers:,} customers, actual mean revenue {actual_r[users].mean():.2f}; ours trained "
          f"and scored in {seconds:.1f} s")
    val = result.metrics
    shown = [f"{k} {val[k]['mae']:.2f} / {val[k]['top10_share']:.3f}" for k in KINDS if k in val]
    print(f"   validation a horizon earlier (MAE / top-10 % share): {'; '.join(shown)} -> {result.kind}")
    print(f"{'model':<28}{'MAE':>9}{'Spearman':>10}{'top10 %':>9}{'tx MAE':>8}")
    out = {}
    for model, (p, r) in rows.items():
        m = value_metrics(actual_r[users], r, actual_p[users], p)
        out[model] = m
        print(f"{model:<28}{m['mae']:>9.2f}{m['spearman']:>10.3f}{m['top10_share']:>9.4f}{m['purchases_mae']:>8.3f}")
    ours, peers = next(iter(out.values())), list(out.values())[1:]
    mae_ok = all(ours["mae"] < p["mae"] for p in peers)
    top_ok = all(ours["top10_share"] > p["top10_share"] for p in peers)
    print(f"beats both peers on MAE: {'PASS' if mae_ok else 'FAIL'}; on top-10 % share: {'PASS' if top_ok else 'FAIL'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--horizon", type=float, default=90.0)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # autograd's, inside lifetimes' optimiser
    retail = online_retail(args.data).log
    print(f"# online-retail: {retail.n_users:,} customers, {len(retail):,} order lines")
    compare("online-retail", retail, datetime(2011, 9, 9, tzinfo=UTC).timestamp(), args.horizon)
    orders = cdnow()
    print(f"\n# CDNOW: {orders.n_users:,} customers, {len(orders):,} orders")
    # a year of history (the cohort's first purchases fall in Q1 1997), then the next horizon
    compare("CDNOW", orders, datetime(1998, 1, 1, tzinfo=UTC).timestamp(), args.horizon)
    if not args.skip_demo:
        from app.demo.generator import generate_shop, to_event_log

        shop = generate_shop(n_users=5000, n_items=800, days=2 * 365, seed=11, now=1.75e9)
        log = to_event_log(shop)
        print(f"\n# demo shop: {log.n_users:,} shoppers, {len(log):,} events")
        compare("demo shop", log, float(log.ts.max()) + 1 - args.horizon * DAY, args.horizon)


if __name__ == "__main__":
    main()
