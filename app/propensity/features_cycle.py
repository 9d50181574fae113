"""Purchase-cycle columns that RFM lacks: the rhythm of a shopper's purchases, the trend of their
spend, a buy-till-you-die view of whether they are still a customer, and the calendar season.

All of it reads only events before the cut-off (``Events``, and ``summarise`` of the same log at
the same cut-off): the BG/NBD model is fit on the feature window alone, never on outcomes.

A *purchase day* is a 24-hour bucket counted back from the cut-off with at least one purchase, as in
``app.value.summary`` (shops send one purchase event per order line; lines are not orders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EventLog, unique_sorted
from app.propensity.features_blocks import PURCHASE, Column, Events
from app.value.algo_btyd import BGNBD, fit_bgnbd_usable
from app.value.summary import Summary, summarise

YEAR_DAYS = 365.0
BTYD_MAX_CUSTOMERS = 20_000  # four parameters are pinned by far fewer; a fit over 100k took 7 s per cut-off
CYCLE_COLUMNS = frozenset({"purchase_gap_mean", "purchase_gap_cv", "purchase_overdue", "spend_trend",
                           "season_shop_index", "season_own_purchases", "season_days_to_peak", "btyd_p_alive",
                           "btyd_expected_purchases"})
NO_PEAK = -1.0  # the days to the season's peak of a shop with under a year of history: unknown
#: The calendar peak is the day whose neighbourhood sold most a year ago: a triangular week (weights
#: 1..4..1) so one busy day with quiet neighbours is found at its own date, not a box filter's tie.
PEAK_KERNEL = np.array([1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0])
NO_GAPS = -1.0  # the gap CV of a shopper with fewer than two gaps: undefined, kept apart from 0 (regular)


def purchase_gaps(ev: Events) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(number of gaps, mean gap, coefficient of variation of the gaps) per user, in days between
    consecutive purchase days; the mean is 0 and the CV ``NO_GAPS`` without enough gaps."""
    n = ev.n_users
    is_p = ev.ty == PURCHASE
    day = ev.days()
    base = int(day.max(initial=0)) + 1
    d_user, d_day = np.divmod(unique_sorted(ev.pair_keys(day, base, is_p)), base)
    same = d_user[1:] == d_user[:-1]
    g_user, gap = d_user[1:][same], (d_day[1:] - d_day[:-1])[same].astype(np.float64)
    count = np.bincount(g_user, minlength=n).astype(np.float64)
    total = np.bincount(g_user, weights=gap, minlength=n)
    squares = np.bincount(g_user, weights=gap * gap, minlength=n)
    mean = np.divide(total, count, out=np.zeros(n), where=count > 0)
    var = np.maximum(np.divide(squares, count, out=np.zeros(n), where=count > 0) - mean * mean, 0.0)
    cv = np.divide(np.sqrt(var), mean, out=np.full(n, NO_GAPS), where=(count >= 2) & (mean > 0))
    return count, mean, cv


def rhythm(ev: Events, shop: ShopCycle) -> list[Column]:
    """Gap mean and CV, and days since the last purchase over the shopper's own typical gap (the
    shop's median gap of repeat buyers for shoppers without one)."""
    count, mean, cv = purchase_gaps(ev)
    repeat = count > 0
    typical = np.where(repeat, mean, max(shop.typical_gap, 1.0))
    since = ev.last_age(ev.ty == PURCHASE).astype(np.float64)
    return [
        ("purchase_gap_mean", "mean days between consecutive purchase days (0 without a repeat)",
         mean.astype(np.float32)),
        ("purchase_gap_cv", "coefficient of variation of the days between purchase days (-1: under two gaps)",
         cv.astype(np.float32)),
        ("purchase_overdue", "days since the last purchase over the shopper's typical gap (the shop's without one)",
         (since / np.maximum(typical, 1.0)).astype(np.float32)),
    ]  # fmt: skip


def spend_trend(ev: Events, span: float = 90.0) -> list[Column]:
    """log change of money spent: the last ``span`` days vs the ``span`` days before."""
    is_p = ev.ty == PURCHASE
    recent = ev.count(is_p & (ev.age <= span), ev.amount)
    before = ev.count(is_p & (ev.age > span) & (ev.age <= 2 * span), ev.amount)
    trend = (np.log1p(recent.astype(np.float64)) - np.log1p(before.astype(np.float64))).astype(np.float32)
    return [("spend_trend", f"log change of spend: last {span:g} days vs the {span:g} before", trend)]


def season(ev: Events, horizon_days: float, shop: ShopCycle) -> list[Column]:
    """The calendar, learned from the log: the shop's purchase days in the target window's dates one
    year earlier over its average for a window that long, the shopper's own purchase days then, and
    the days from the cut-off to the dates of the shop's busiest week a year ago (its known peak:
    Christmas for one shop, a summer sale for another; nothing about any calendar is hard-coded).

    With under a year (plus a horizon) of history the shop index is 1 (no season known), the
    shopper's count 0 and the peak unknown (-1); all are then constant and a model ignores them.
    """
    n = ev.n_users
    d_user, d_day = purchase_days(ev)
    last_year = (d_day >= YEAR_DAYS - horizon_days) & (d_day < YEAR_DAYS)
    index, peak = shop.season_index, shop.season_peak
    own = np.bincount(d_user[last_year], minlength=n).astype(np.float32)
    return [
        ("season_shop_index", "the shop's purchases in these dates a year ago over its average (1: unknown)",
         np.full(n, index, dtype=np.float32)),
        ("season_own_purchases", "purchase days in these dates a year ago", own),
        ("season_days_to_peak", "days until the dates of the shop's busiest week a year ago (-1: unknown)",
         np.full(n, peak, dtype=np.float32)),
    ]  # fmt: skip


def days_to_peak(per_day: NDArray[np.int64]) -> float:
    """Days from the cut-off until the date, this year, of last year's peak; ``per_day[a]``: the
    shop's purchase days in the bucket ``a`` days before the cut-off (``Events.days``), a year of them.

    The year is a circle (the bucket a year back neighbours yesterday's), so the week around a peak
    near either end is summed across the join. Bucket ``a`` holds ages (a, a + 1] days, whose dates
    come round again 364 - a days after the cut-off.
    """
    half = len(PEAK_KERNEL) // 2
    circular = np.r_[per_day[-half:], per_day, per_day[:half]].astype(np.float64)
    weekly = np.convolve(circular, PEAK_KERNEL, mode="valid")  # one sum per bucket of the year
    return float(len(per_day) - 1 - int(np.argmax(weekly)))


def btyd(
    log: EventLog, cutoff: float, horizon_days: float, n_users: int, shop: ShopCycle, s: Summary | None = None
) -> list[Column]:
    """BG/NBD p_alive and expected purchase days in the horizon, fit on the history before the cut-off
    (`shop_cycle`); 0 for shoppers who never bought (and for everyone when the fit is impossible)."""
    alive, expected = np.zeros(n_users, np.float32), np.zeros(n_users, np.float32)
    if shop.bgnbd is not None:
        s = summarise(log, cutoff) if s is None else s
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            e = shop.bgnbd.expected_purchases(horizon_days, s.x, s.t_x, s.T)
            p = shop.bgnbd.p_alive(s.x, s.t_x, s.T)
        ok = np.isfinite(e) & np.isfinite(p)
        alive[s.users[ok]], expected[s.users[ok]] = p[ok], e[ok]
    return [
        ("btyd_p_alive", "BG/NBD probability the shopper is still a customer", alive),
        ("btyd_expected_purchases", f"BG/NBD expected purchase days in the next {horizon_days:g} days", expected),
    ]


def purchase_days(ev: Events) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(user, day bucket) of every purchase day, sorted by user then day."""
    day = ev.days()
    base = int(day.max(initial=0)) + 1
    d_user, d_day = np.divmod(unique_sorted(ev.pair_keys(day, base, ev.ty == PURCHASE)), base)
    return d_user, d_day


@dataclass(frozen=True)
class CyclePart:
    """What some shoppers (a user shard's, or all) contribute to the shop-wide `ShopCycle`."""

    repeat_gaps: NDArray[np.float64]  # the mean gap of each repeat buyer
    year_days: NDArray[np.int64]  # purchase days per day bucket of the last year
    window_days: int  # purchase days in the horizon's dates a year ago
    purchase_days: int
    oldest_age: float  # days, -inf without events
    customers: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]  # BG/NBD's x, t_x, T


@dataclass(frozen=True)
class ShopCycle:
    """The shop-wide quantities a shopper's cycle columns are measured against."""

    typical_gap: float  # the median gap of repeat buyers (the recency cap without any)
    season_index: float  # 1: unknown
    season_peak: float  # NO_PEAK: unknown
    bgnbd: BGNBD | None  # None: no fit possible


def cycle_part(
    log: EventLog, ev: Events, cutoff: float, horizon_days: float, s: Summary | None = None
) -> CyclePart:
    count, mean, _ = purchase_gaps(ev)
    _, d_day = purchase_days(ev)
    last_year = (d_day >= YEAR_DAYS - horizon_days) & (d_day < YEAR_DAYS)
    s = summarise(log, cutoff) if s is None else s
    return CyclePart(
        repeat_gaps=mean[count > 0], year_days=np.bincount(d_day[d_day < YEAR_DAYS], minlength=int(YEAR_DAYS)),
        window_days=int(last_year.sum()), purchase_days=int(d_day.size),
        oldest_age=float(ev.age.max()) if len(ev.age) else float("-inf"), customers=(s.x, s.t_x, s.T),
    )  # fmt: skip


def shop_cycle(parts: Sequence[CyclePart], cap: float, horizon_days: float) -> ShopCycle:
    """The shop-wide quantities from every shopper's part, the parts in user order (the BG/NBD fit
    samples customers by position)."""
    gaps = np.concatenate([p.repeat_gaps for p in parts])
    typical = float(np.median(gaps)) if gaps.size else cap
    index, peak = 1.0, NO_PEAK
    if sum(p.purchase_days for p in parts) and max(p.oldest_age for p in parts) >= YEAR_DAYS:
        year_days = np.sum([p.year_days for p in parts], axis=0)
        year_rate = float(year_days.sum()) / YEAR_DAYS
        if year_rate > 0:
            index = float(sum(p.window_days for p in parts)) / horizon_days / year_rate
            peak = days_to_peak(year_days)
    x, t_x, T = (np.concatenate([p.customers[k] for p in parts]) for k in range(3))
    return ShopCycle(typical, index, peak, _fit_bgnbd(x, t_x, T, horizon_days))


def _fit_bgnbd(
    x: NDArray[np.float64], t_x: NDArray[np.float64], T: NDArray[np.float64], horizon_days: float
) -> BGNBD | None:
    if len(x) < 2 or not bool((x > 0).any()):
        return None
    rows = np.arange(len(x))
    if len(x) > BTYD_MAX_CUSTOMERS:
        rows = np.sort(np.random.default_rng(0).choice(len(x), BTYD_MAX_CUSTOMERS, replace=False))
    # fit at whole days, as lifetimes' daily summaries do: far fewer distinct rows to weigh
    fit_x, fit_t_x, fit_T = x[rows], np.round(t_x[rows]), np.round(T[rows])
    try:  # every shopper's predictions must be finite, not only the sample's
        return fit_bgnbd_usable(fit_x, fit_t_x, fit_T, horizon_days, probe=(x, t_x, T))
    except ValueError:  # a non-finite likelihood
        return None


def cycle_columns(
    log: EventLog, ev: Events, cutoff: float, horizon_days: float, shop: ShopCycle | None = None
) -> list[Column]:
    """Every purchase-cycle column, in a fixed order; `shop`: the shop-wide quantities, when `log` holds
    only some of the shop's shoppers (a user shard), else computed from `log`."""
    s = summarise(log, cutoff)
    shop = shop or shop_cycle([cycle_part(log, ev, cutoff, horizon_days, s)], ev.cap, horizon_days)
    return (rhythm(ev, shop) + spend_trend(ev) + season(ev, horizon_days, shop)
            + btyd(log, cutoff, horizon_days, ev.n_users, shop, s))  # fmt: skip
