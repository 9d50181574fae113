"""Per-customer purchase summaries as of a cut-off, and what each customer did in a horizon after it.

A *transaction* is a purchase day: a shopper's purchase events within one 24-hour bucket (counted
back from the cut-off) are one order. Shops send one purchase event per order line, so counting
events would count lines; lifetimes' summaries with ``freq="D"`` group the same way. A transaction's
value is the sum of its lines' revenue, ``price × value`` when value carries a quantity, else
``price`` (a missing price counts 0).

Boundaries follow ``app.propensity.features_labels``: history is ``ts < cutoff``, the outcome window
is ``cutoff <= ts < cutoff + horizon``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.eventlog import TYPE_CODE, EventLog

DAY = 86_400.0
PURCHASE = TYPE_CODE["purchase"]


@dataclass(frozen=True)
class Summary:
    """The customers (shoppers with a purchase before the cut-off), row k = customer ``users[k]``.

    users:  int64[n] dense user indices, ascending
    x:      float64[n] repeat transactions (transaction days after the first)
    t_x:    float64[n] days from the first transaction to the last
    T:      float64[n] days from the first transaction to the cut-off
    m:      float64[n] mean value of the repeat transactions (0 without repeats)
    first:  float64[n] value of the first transaction
    total:  float64[n] value of every transaction
    """

    users: NDArray[np.int64]
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    m: NDArray[np.float64]
    first: NDArray[np.float64]
    total: NDArray[np.float64]
    cutoff: float

    def __len__(self) -> int:
        return len(self.users)


def _transactions(
    log: EventLog, rows: NDArray[np.intp], origin: float
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """(user, earliest ts, value) per purchase day of ``rows``, sorted by user then time; days are
    24-hour buckets counted from ``origin``."""
    day = np.floor((log.ts[rows] - origin) / DAY).astype(np.int64)
    day -= int(day.min(initial=0))
    base = int(day.max(initial=0)) + 1
    keys = log.user[rows].astype(np.int64) * base + day
    uniq, inverse = np.unique(keys, return_inverse=True)
    value = np.bincount(inverse, weights=log.revenue(rows), minlength=len(uniq)).astype(np.float64)
    earliest = np.full(len(uniq), np.inf)
    np.minimum.at(earliest, inverse, log.ts[rows])
    return (uniq // base).astype(np.int64), earliest, value


def summarise(log: EventLog, cutoff: float) -> Summary:
    """The BG/NBD and Gamma-Gamma inputs of every customer as of ``cutoff`` (epoch seconds)."""
    rows = np.flatnonzero((log.type == PURCHASE) & (log.ts < cutoff))
    user, ts, value = _transactions(log, rows, cutoff)
    users, first_pos, count = np.unique(user, return_index=True, return_counts=True)
    last_pos = first_pos + count - 1
    x = (count - 1).astype(np.float64)
    total = np.add.reduceat(value, first_pos) if len(value) else np.zeros(0)
    first = value[first_pos] if len(value) else np.zeros(0)
    return Summary(
        users=users.astype(np.int64), x=x, t_x=(ts[last_pos] - ts[first_pos]) / DAY,
        T=(cutoff - ts[first_pos]) / DAY, m=np.where(x > 0, (total - first) / np.maximum(x, 1), 0.0),
        first=first, total=total, cutoff=float(cutoff),
    )  # fmt: skip


def outcome(log: EventLog, cutoff: float, horizon_days: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(transactions, revenue), each float64[n_users], in ``cutoff <= ts < cutoff + horizon``."""
    rows = np.flatnonzero(
        (log.type == PURCHASE) & (log.ts >= cutoff) & (log.ts < cutoff + horizon_days * DAY)
    )
    user, _, value = _transactions(log, rows, cutoff)
    purchases = np.bincount(user, minlength=log.n_users).astype(np.float64)
    revenue = np.bincount(user, weights=value, minlength=log.n_users).astype(np.float64)
    return purchases, revenue
