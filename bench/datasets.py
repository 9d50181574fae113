"""The quality benchmark's data sets as event logs, each with its natural train/test split.

    from bench.datasets import DATASETS, load
    data = load("online-retail", Path("../shared/data"))

Each loader turns one public data set (read from `../shared/data` or a path given on the command
line, never copied into the project) into what a shop would send Shopmind: events of the API's types
with their timestamps, and one document per item (the text content filtering sees). Each data set
keeps the split its shape calls for:

- `ml-100k`: ratings; each user's last 20 % by time is the test (the classic MovieLens protocol);
- `online-retail`: a year of a UK web shop's orders (sparse purchases); a global time cut, the last
  20 % of the time span is the test;
- `online-retail-sparse`: the same orders thinned to 2-6 items per shopper (the shape of a shop whose
  shoppers buy a few times over years); the same global time cut;
- `taobao`: a 9-day clickstream (views, carts, favourites, purchases); a global time cut;
- `synthetic-drift`: three years of the demo generator's shop whose shoppers' tastes drift; a global
  time cut;
- `ml-100k-bulk`: MovieLens with every timestamp equal (a bulk import) and a random 80/20 split per
  user, the shape of an implicit-feedback import without times.

Test targets are the items of the held-out events of a positive type that the user had not touched
in training, for users with at least one training event.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.eventlog import TYPE_CODE, EventLog
from app.recommend.algo_matrix import InteractionConfig
from app.recommend.algo_metrics import time_holdout
from app.recommend.algo_validate import holdout_targets

DAY = 86_400.0


@dataclass(frozen=True)
class Dataset:
    """A log, its item documents (`docs[i]` describes item i) and the test mask over its events."""

    name: str
    log: EventLog
    docs: list[str]
    test: NDArray[np.bool_]
    split: str  # how `test` was drawn, for the table


def _log(user: list[str], item: list[str], types: NDArray[np.int8], value: NDArray[np.float32],
         price: NDArray[np.float32], ts: NDArray[np.float64], items: list[str]) -> EventLog:
    user_ids, user_idx = np.unique(np.asarray(user, dtype=object), return_inverse=True)
    pos = {i: k for k, i in enumerate(items)}
    return EventLog(
        user=user_idx.astype(np.int32), item=np.fromiter((pos[i] for i in item), np.int32, len(item)),
        type=types, value=value, price=price, ts=ts, session=np.full(len(user), -1, dtype=np.int32),
        user_ids=user_ids.astype(object), item_ids=np.asarray(items, dtype=object),
    )


def global_cut(log: EventLog, share: float = 0.2) -> NDArray[np.bool_]:
    """Events in the last `share` of the time span (from the 0.1 % quantile, outliers aside)."""
    start, end = float(np.quantile(log.ts, 0.001)), float(log.ts.max())
    return log.ts >= end - share * (end - start)


def random_holdout(log: EventLog, share: float = 0.2, seed: int = 0) -> NDArray[np.bool_]:
    """A random `share` of each user's events (at least one, never all)."""
    order = np.random.default_rng(seed).permutation(len(log))
    shuffled = log.select(order)
    shuffled = EventLog(**{**shuffled.__dict__, "ts": np.arange(len(log), dtype=np.float64)})
    mask = np.zeros(len(log), dtype=bool)
    mask[order] = time_holdout(shuffled, share)
    return mask


def cdnow() -> EventLog:
    """CDNOW's orders (Fader & Hardie's CD shop: 23,570 customers who first bought in Q1 1997, every
    order to June 1998), from the copy the `lifetimes` package ships (a benchmark dependency; nothing
    is copied into this repository). One purchase event per order, priced at its dollar value, the
    way a shop without item data would send it through the API."""
    from importlib.resources import files

    text = files("lifetimes").joinpath("datasets", "CDNOW_master.txt").read_text()
    rows = np.loadtxt(text.splitlines()[1:], dtype=np.float64)
    day = rows[:, 1].astype(np.int64)
    ts = np.array([datetime(int(d // 10000), int(d // 100 % 100), int(d % 100), 12, tzinfo=UTC).timestamp()
                   for d in day], dtype=np.float64)
    n = len(rows)
    return _log([f"c{int(c)}" for c in rows[:, 0]], ["cd"] * n, np.full(n, TYPE_CODE["purchase"], np.int8),
                np.full(n, np.nan, np.float32), rows[:, 3].astype(np.float32), ts, ["cd"])


def movielens(root: Path) -> Dataset:
    path = root / "ml-100k"
    data = np.loadtxt(path / "u.data", dtype=np.int64)
    genres = [line.split("|")[0] for line in (path / "u.genre").read_text("latin-1").splitlines() if line]
    rows = [line.split("|") for line in (path / "u.item").read_text("latin-1").splitlines() if line]
    docs = [" ".join([r[1], *(g for g, f in zip(genres, r[5:5 + len(genres)], strict=True) if f == "1")])
            for r in rows]
    n = len(data)
    log = _log([str(u) for u in data[:, 0]], [str(i) for i in data[:, 1]],
               np.full(n, TYPE_CODE["rating"], np.int8), data[:, 2].astype(np.float32),
               np.full(n, np.nan, np.float32), data[:, 3].astype(np.float64), [r[0] for r in rows])
    return Dataset("ml-100k", log, docs, time_holdout(log, 0.2), "per-user last 20 % by time")


def movielens_bulk(root: Path) -> Dataset:
    ml = movielens(root)
    log = EventLog(**{**ml.log.__dict__, "ts": np.full(len(ml.log), 1.7e9)})
    return Dataset("ml-100k-bulk", log, ml.docs, random_holdout(log), "tied timestamps, random 80/20 per user")


def online_retail(root: Path) -> Dataset:
    user, item, qty, price, ts = [], [], [], [], []
    titles: dict[str, str] = {}
    with gzip.open(root / "online-retail" / "online_retail.csv.gz", "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            code = row["StockCode"]
            if row["Description"] and code not in titles:
                titles[code] = row["Description"]
            if not row["CustomerID"] or row["InvoiceNo"].startswith("C") or int(row["Quantity"]) <= 0:
                continue
            user.append(row["CustomerID"])
            item.append(code)
            qty.append(float(row["Quantity"]))
            price.append(float(row["UnitPrice"]))
            ts.append(datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
    items = sorted(set(item))
    n = len(user)
    log = _log(user, item, np.full(n, TYPE_CODE["purchase"], np.int8), np.asarray(qty, np.float32),
               np.asarray(price, np.float32), np.asarray(ts), items)
    return Dataset("online-retail", log, [titles.get(i, i) for i in items], global_cut(log),
                   "global time cut, last 20 % of the span")


def online_retail_sparse(root: Path) -> Dataset:
    """online-retail thinned to 2-6 distinct items bought per shopper (chosen at random, seed 0): the
    sparse-purchase shape, where most shoppers have a few orders and what everyone buys carries most
    of what can be predicted."""
    full = online_retail(root)
    log, rng = full.log, np.random.default_rng(0)
    # one line per (shopper, item), in random order, then each shopper's first 2-6 of them
    shuffled = rng.permutation(len(log))
    _, first = np.unique(log.user[shuffled].astype(np.int64) * log.n_items + log.item[shuffled], return_index=True)
    lines = shuffled[first][rng.permutation(len(first))]
    by_user = lines[np.argsort(log.user[lines], kind="stable")]
    users = log.user[by_user]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    quota = rng.integers(2, 7, log.n_users)
    thin = log.select(np.sort(by_user[rank < quota[users]]))
    return Dataset("online-retail-sparse", thin, full.docs, global_cut(thin),
                   "2-6 items per shopper; global time cut, last 20 % of the span")


TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "bookmark", "buy": "purchase"}


def taobao(root: Path) -> Dataset:
    folder = root / "taobao-userbehavior-sample"
    user, item, kinds, ts = [], [], [], []
    category: dict[str, str] = {}
    with gzip.open(next(folder.glob("*.csv.gz")), "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            user.append(row["user_id"])
            item.append(row["item_id"])
            category[row["item_id"]] = row["category_id"]
            kinds.append(TYPE_CODE[TAOBAO_TYPES[row["behavior_type"]]])
            ts.append(float(row["timestamp"]))
    items = sorted(category)
    n = len(user)
    log = _log(user, item, np.asarray(kinds, np.int8), np.full(n, np.nan, np.float32),
               np.full(n, np.nan, np.float32), np.asarray(ts), items)
    return Dataset("taobao", log, [f"category {category[i]}" for i in items], global_cut(log),
                   "global time cut, last 20 % of the span")


def synthetic_drift(root: Path) -> Dataset:
    from app.demo.generator import generate_shop, to_event_log

    shop = generate_shop(n_users=3000, n_items=600, days=3 * 365, seed=7, now=1.8e9,
                         events_per_user_mean=60.0, horizon_days=30, taste_drift=1.0)
    log = to_event_log(shop)
    docs = [" ".join([it["title"], *it["categories"], *it["tags"], it["brand"]]) for it in shop.items]
    return Dataset("synthetic-drift", log, docs, global_cut(log, 0.1), "global time cut, last 10 % of the span")


DATASETS: dict[str, Callable[[Path], Dataset]] = {
    "ml-100k": movielens,
    "online-retail": online_retail,
    "online-retail-sparse": online_retail_sparse,
    "taobao": taobao,
    "synthetic-drift": synthetic_drift,
    "ml-100k-bulk": movielens_bulk,
}


def load(name: str, root: Path) -> Dataset:
    return DATASETS[name](root)


class Split:
    """Train/test of a data set with the targets every method is scored against.

    users: the scored users (a training event and a held-out target); relevant, seen: csr bool
    [len(users), n_items]; binary: csr float32[n_users, n_items] every training interaction (peers).
    """

    def __init__(self, log: EventLog, test: NDArray[np.bool_]) -> None:
        self.train, self.test = log.select(~test), log.select(test)
        # the targets validation uses: positive held-out events of items not seen in training
        rel, seen = holdout_targets(self.train, self.test, InteractionConfig())
        known = np.diff(seen.indptr) > 0
        self.users = np.flatnonzero((np.diff(rel.indptr) > 0) & known)
        self.relevant, self.seen = rel[self.users], seen[self.users]
        self.binary = sp.csr_matrix(seen, dtype=np.float32)
