"""Validation on the shop's own future: the split it faces, and the constants it then chooses."""

from __future__ import annotations

import numpy as np
import pytest

from app.eventlog import EventLog
from app.recommend.algo_content import content_neighbours, fit_content
from app.recommend.algo_holdout import MIN_RETURNING, returning_users, timestamps_tied, validation_holdout
from app.recommend.algo_validate import clearly_better, validate

DAY = 86_400.0


def _log(n_users: int, per_user: int, ts: np.ndarray, seed: int = 0) -> EventLog:
    rng = np.random.default_rng(seed)
    users = [f"u{u}" for u in range(n_users) for _ in range(per_user)]
    items = [f"i{i}" for i in rng.integers(0, 50, n_users * per_user)]
    return EventLog.from_records(users, items, ["view"] * len(users), ts.tolist(),
                                 item_universe=[f"i{i}" for i in range(50)])


def test_a_global_time_cut_holds_out_the_newest_events_of_returning_shoppers() -> None:
    n_users, per_user = 400, 10
    ts = 1e9 + np.random.default_rng(1).uniform(0, 100 * DAY, n_users * per_user)  # everyone, all the time
    log = _log(n_users, per_user, ts)
    holdout = validation_holdout(log)
    assert holdout.kind == "time_cut"
    held = log.ts[holdout.mask]
    assert held.min() > holdout.cut >= log.ts[~holdout.mask].max()  # the future, and nothing else
    # the window follows the data's own rate: the newest 15 % of events
    assert holdout.mask.mean() == pytest.approx(0.15, abs=0.01)
    assert holdout.window_days == pytest.approx((log.ts.max() - holdout.cut) / DAY)
    assert returning_users(log, holdout.mask) >= MIN_RETURNING


def test_tied_timestamps_fall_back_to_a_random_holdout_per_user() -> None:
    n_users, per_user = 300, 10
    log = _log(n_users, per_user, np.full(n_users * per_user, 1.7e9))  # a bulk import
    assert timestamps_tied(log.ts)
    holdout = validation_holdout(log)
    assert holdout.kind == "random" and np.isnan(holdout.cut)
    per_user_held = np.bincount(log.user[holdout.mask], minlength=n_users)
    assert per_user_held.min() >= 1 and per_user_held.max() < per_user  # each user some, never all
    # random, not the last events in the arrays' order (an arbitrary order for tied times)
    position_in_user = np.arange(len(log)) % per_user
    assert 0 < position_in_user[holdout.mask].mean() < per_user - 1.5
    assert set(position_in_user[holdout.mask].tolist()) == set(range(per_user))


def test_shoppers_active_in_one_burst_fall_back_to_each_ones_latest_events() -> None:
    n_users, per_user = 400, 10
    # every shopper's whole history within one hour, shoppers one after another (MovieLens raters)
    ts = 1e9 + np.repeat(np.arange(n_users) * DAY, per_user) + np.tile(np.arange(per_user) * 60.0, n_users)
    log = _log(n_users, per_user, ts)
    holdout = validation_holdout(log)
    assert holdout.kind == "per_user_time"
    held = np.bincount(log.user[holdout.mask], minlength=n_users)
    assert (held == 2).all()  # each shopper's latest 20 %


def _shop(drift: bool, seed: int) -> tuple[EventLog, list[str]]:
    """600 shoppers over two years, each with two favourite groups of items (six groups of 20).

    Stationary: every event picks either group at random, all the time. Drifting: a shopper moves
    from the first group to the second, an event at time t coming from the second with probability
    t / span, so their recent events predict the next ones better than their whole history does.
    """
    rng = np.random.default_rng(seed)
    n_items, n_groups, span = 120, 6, 720 * DAY
    users, items, ts = [], [], []
    for u in range(600):
        first, second = rng.choice(n_groups, 2, replace=False)
        for t in np.sort(rng.uniform(0, span, 40)):
            late = t > rng.uniform(0, span) if drift else rng.random() < 0.5
            group = second if late else first
            users.append(f"u{u}")
            items.append(f"i{group * (n_items // n_groups) + int(rng.integers(0, n_items // n_groups))}")
            ts.append(1e9 + t)
    log = EventLog.from_records(users, items, ["view"] * len(users), ts,
                                item_universe=[f"i{i}" for i in range(n_items)])
    return log, [f"thing{i}" for i in range(n_items)]


def _chosen(drift: bool, seed: int) -> dict[str, str]:
    log, docs = _shop(drift, seed)
    result = validate(log, content_neighbours(fit_content(docs), k=10))
    assert result.metrics["holdout"]["kind"] == "time_cut"
    chosen: dict[str, str] = result.metrics["chosen"]
    return chosen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_validation_keeps_no_decay_when_the_signal_does_not_change(seed: int) -> None:
    chosen = _chosen(False, seed)
    assert chosen["half_life_days"] == "none"
    assert chosen["history_half_life_days"] == "none"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_validation_chooses_a_short_half_life_when_tastes_drift(seed: int) -> None:
    chosen = _chosen(True, seed)
    assert chosen["history"] == "recent_25"  # a half-life of 8 events, not the whole history
    assert chosen["history_half_life_days"] != "none"


def test_every_candidate_is_scored_on_two_futures() -> None:
    log, docs = _shop(False, 1)
    result = validate(log, content_neighbours(fit_content(docs), k=10))
    assert result.metrics["holdout"]["folds"] == 2  # the window, and the window before it


def test_tied_timestamps_get_no_sequence_weight() -> None:
    """The order of tied events is the import file's: a "next item" signal there is noise."""
    log, docs = _shop(False, 1)
    bulk = EventLog(**{**log.__dict__, "ts": np.full(len(log), 1.7e9)})
    result = validate(bulk, content_neighbours(fit_content(docs), k=10))
    assert result.metrics["holdout"]["kind"] == "random"
    assert result.config.cf.sequence_weight == 0.0
    assert set(result.metrics["grid"]["sequence_weight"]) == {"0"}


def test_a_decay_must_beat_the_current_choice_clearly() -> None:
    rng = np.random.default_rng(0)
    current = rng.uniform(0, 1, 1000)
    noise = current + rng.normal(0.004, 0.2, 1000)  # a little better on average, by far less than the noise
    assert noise.mean() > current.mean()
    assert not clearly_better(noise, current)
    assert clearly_better(current + rng.normal(0.02, 0.05, 1000), current)
    assert not clearly_better(current + 0.001, current)  # consistent, but below the 0.002 floor
