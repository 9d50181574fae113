"""Targets and labels: parsing, the [T, T + h) window at both edges, churn and category targets."""

from __future__ import annotations

import numpy as np
import pytest

from app.eventlog import EventLog
from app.propensity import DAY, Target, active_before, labels

T = 1_700_000_000.0


def test_target_parse_accepts_the_three_forms() -> None:
    assert Target.parse("purchase") == Target("purchase")
    assert Target.parse("churn") == Target("churn")
    assert Target.parse("purchase:shoes") == Target("purchase", "shoes")
    assert str(Target.parse(" purchase:home furniture ")) == "purchase:home furniture"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("teleport", "unknown propensity target 'teleport'"),
        ("churn:shoes", "only 'purchase' takes a category"),
        ("purchase:", "category after 'purchase:' is empty"),
        ("", "target must be a string"),
    ],
)
def test_target_parse_rejects_with_a_readable_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Target.parse(text)


def one_user(*events: tuple[str, float], item: str = "x") -> EventLog:
    return EventLog.from_records(
        users=["a"] * len(events), items=[item] * len(events), types=[t for t, _ in events], ts=[s for _, s in events]
    )


def test_purchase_label_window_is_from_the_cutoff_inclusive_to_the_horizon_exclusive() -> None:
    h = 30.0
    assert labels(one_user(("purchase", T)), T, h, "purchase")[0]  # exactly at T: in the window
    assert not labels(one_user(("purchase", T - 1.0)), T, h, "purchase")[0]  # before T: history
    assert labels(one_user(("purchase", T + h * DAY - 1.0)), T, h, "purchase")[0]
    assert not labels(one_user(("purchase", T + h * DAY)), T, h, "purchase")[0]  # exactly T + h: out


def test_the_brief_example_events_at_minus_1_plus_1_and_plus_40_days() -> None:
    log = one_user(("purchase", T - DAY), ("view", T + DAY), ("purchase", T + 40 * DAY))
    assert not labels(log, T, 30, "purchase")[0]  # the purchases are before T and after T + 30 d
    assert not labels(log, T, 30, "churn")[0]  # the view at T + 1 d is activity
    assert labels(log, T, 45, "purchase")[0]


def test_churn_is_no_event_of_any_type_in_the_window() -> None:
    log = EventLog.from_records(
        users=["a", "a", "b", "b", "c"],
        items=["x"] * 5,
        types=["purchase", "view", "view", "bookmark", "view"],
        ts=[T - DAY, T + 31 * DAY, T - DAY, T + 29 * DAY, T - 5 * DAY],
    )
    np.testing.assert_array_equal(labels(log, T, 30, "churn"), [True, False, True])
    np.testing.assert_array_equal(active_before(log, T), [True, True, True])
    np.testing.assert_array_equal(active_before(log, T - 2 * DAY), [False, False, True])


def test_category_purchase_label() -> None:
    log = EventLog.from_records(
        users=["a", "b", "c"],
        items=["shoe", "book", "shoe"],
        types=["purchase", "purchase", "view"],
        ts=[T + DAY, T + DAY, T + DAY],
        item_universe=["book", "shoe"],
    )
    cats = [["books"], ["shoes", "sport"]]
    np.testing.assert_array_equal(labels(log, T, 30, "purchase:shoes", cats), [True, False, False])
    np.testing.assert_array_equal(labels(log, T, 30, "purchase:books", cats), [False, True, False])
    with pytest.raises(ValueError, match="unknown category 'hats'"):
        labels(log, T, 30, "purchase:hats", cats)
    with pytest.raises(ValueError, match="needs item categories"):
        labels(log, T, 30, "purchase:shoes")


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        labels(one_user(("view", T)), T, 0, "purchase")
