"""CLI log lines carry the fields the code logs with them."""

from __future__ import annotations

import logging
import sys

from app.observability.logformat import KeyValueFormatter


def _record(extra: dict[str, object], exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    record = logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, "rebuild.stage", None, info, extra=extra)
    return record


def test_extra_fields_follow_the_event_name() -> None:
    line = KeyValueFormatter("%(levelname)s %(name)s %(message)s").format(
        _record({"stage": "load", "seconds": 0.5}))
    assert line == "INFO t rebuild.stage stage=load seconds=0.5"


def test_a_line_without_fields_is_unchanged_and_a_traceback_stays_below() -> None:
    formatter = KeyValueFormatter("%(message)s")
    assert formatter.format(_record({})) == "rebuild.stage"
    lines = formatter.format(_record({"run_id": 3}, exc=True)).splitlines()
    assert lines[0] == "rebuild.stage run_id=3"
    assert lines[1].startswith("Traceback") and lines[-1] == "ValueError: boom"
