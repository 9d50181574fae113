"""The validation split a rebuild chooses its constants on: the future after a global time cut.

Serving faces the moment after the newest event: every shopper asks for what comes next, with
everybody's past known and nobody's future. A per-user "latest 20 %" holdout lets other shoppers'
later events into training and rewards signals that do not carry forward (on sparse purchase data it
rated CF far above popularity, which then beat it on the real future). So validation trains on
everything before T - delta and asks each shopper active in (T - delta, T] for what they did there.

delta comes from the data's own rate: the window holds the newest `share` of the item events (so a
busy shop validates on its last days, a sleepy one on its last months), widened once when too few
shoppers who were active before it come back inside it. Two shapes have no usable global future:

- most timestamps equal (a bulk import): each user's events are held out at random;
- shoppers whose whole activity is one burst (MovieLens raters): however wide the window, hardly
  anyone in it has a past. Each user's own latest events are then the future there is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.eventlog import EventLog
from app.recommend.algo_metrics import time_holdout

SECONDS_PER_DAY = 86_400.0
#: A log whose most common timestamp holds more than this share of events has no usable order.
TIED_SHARE = 0.5
#: Shoppers active before and inside a cut's window that make the cut worth validating on.
MIN_RETURNING = 200


@dataclass(frozen=True)
class Holdout:
    """mask: bool[n_events], True = held out. kind: "time_cut", "per_user_time" (few returning
    shoppers) or "random" (tied timestamps). cut: epoch seconds of the cut and window_days: T - cut
    in days, both NaN unless kind is "time_cut"."""

    mask: NDArray[np.bool_]
    kind: str
    cut: float
    window_days: float


def timestamps_tied(ts: NDArray[np.float64]) -> bool:
    """Whether most events share one timestamp (a bulk import), so time order means nothing."""
    if len(ts) < 2:
        return True
    _, counts = np.unique(ts, return_counts=True)
    return bool(counts.max() > TIED_SHARE * len(ts))


def random_holdout(log: EventLog, share: float, seed: int = 0) -> NDArray[np.bool_]:
    """A random `share` of each user's item events (at least one, never all), bool[n_events]."""
    rank = np.random.default_rng(seed).permutation(len(log)).astype(np.float64)
    return time_holdout(EventLog(**{**log.__dict__, "ts": rank}), share)


def returning_users(log: EventLog, mask: NDArray[np.bool_]) -> int:
    """Users with item events both outside and inside `mask`."""
    has_item = log.item >= 0
    before = np.bincount(log.user[has_item & ~mask], minlength=log.n_users) > 0
    after = np.bincount(log.user[has_item & mask], minlength=log.n_users) > 0
    return int((before & after).sum())


def validation_holdout(log: EventLog, shares: tuple[float, ...] = (0.15, 0.3), seed: int = 0) -> Holdout:
    """The global time cut, or a per-user holdout, as described above.

    Events at exactly the cut stay in training. A cut needs at least MIN_RETURNING shoppers (or a
    tenth of the active ones, if fewer) active on both sides. Raises ValueError when nothing can be
    held out.
    """
    has_item = log.item >= 0
    ts = log.ts[has_item]
    if not len(ts):
        raise ValueError("no item events to validate on")
    nan = float("nan")
    if timestamps_tied(ts):
        mask = random_holdout(log, shares[0], seed)
        kind = "random"
    else:
        active = int((np.bincount(log.user[has_item], minlength=log.n_users) > 0).sum())
        enough = max(2, min(MIN_RETURNING, active // 10))
        for share in shares:
            cut = float(np.quantile(ts, 1.0 - share, method="lower"))
            mask = has_item & (log.ts > cut)
            if returning_users(log, mask) >= enough:
                return Holdout(mask, "time_cut", cut, (float(ts.max()) - cut) / SECONDS_PER_DAY)
        mask = time_holdout(log, 0.2)
        kind = "per_user_time"
    if not mask.any():
        raise ValueError("too few events per user to hold any out")
    return Holdout(mask, kind, nan, nan)


def time_span_days(log: EventLog) -> float:
    """The log's time span in days, from its 1 % quantile (a few stray old events aside) to the last."""
    if not len(log):
        return 0.0
    return float(log.ts.max() - np.quantile(log.ts, 0.01)) / SECONDS_PER_DAY
