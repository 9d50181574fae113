"""The monthly partitions of `events`: made ahead of time, split out of the default, dropped whole.

`events` is range-partitioned on `ts`, one partition a calendar month (UTC) named `events_pYYYYMM`,
plus `events_default` for any time no monthly partition covers: an event is never refused for its
timestamp. The worker calls `maintain` on every tick of its loop (`app.worker.loop`):

- it makes the partitions of this month and the next `AHEAD_MONTHS`, so ingest's rows land in a
  partition of their own month;
- it gives every month found in the default partition (a back-fill, an event before the worker first
  ran) a partition of its own, moving those rows out of the default in the same transaction;
- with a retention of N months (`SHOPMIND_EVENT_RETENTION_MONTHS`) it detaches and drops the
  partitions that end before the first day of the month N months before this one, and deletes the
  matching rows of `event_ids` in the same transaction. Never a row-by-row DELETE of events.

New partitions are made as plain tables and then attached with a CHECK constraint that proves their
range: ATTACH takes only SHARE UPDATE EXCLUSIVE on `events`, so ingest keeps writing meanwhile
(CREATE TABLE … PARTITION OF would lock it out). Detaching takes ACCESS EXCLUSIVE on `events` for a
moment. Every step waits at most LOCK_TIMEOUT for its locks, and a step that times out is retried at
the next tick.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from app.common import locks

log = logging.getLogger(__name__)

AHEAD_MONTHS = 3
"""Monthly partitions kept ready beyond the current month."""
DEFAULT = "events_default"
LOCK_TIMEOUT = "5s"
_NAME = re.compile(r"^events_p(\d{4})(\d{2})$")


def month_start(at: datetime) -> datetime:
    """The first instant (UTC) of `at`'s month."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    k = month.year * 12 + month.month - 1 + n
    return datetime(k // 12, k % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"events_p{month.year:04d}{month.month:02d}"


def is_partition_name(name: str | None) -> bool:
    """Tables the models do not declare because the worker makes them (the schema-drift test skips them)."""
    return name is not None and (name == DEFAULT or _NAME.match(name) is not None)


def monthly_partitions(conn: psycopg.Connection[Any]) -> dict[datetime, str]:
    """The monthly partitions attached to `events`, by their first instant."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    found: dict[datetime, str] = {}
    for (name,) in rows:
        match = _NAME.match(name)
        if match:
            found[datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)] = name
    return found


def _months_in_default(conn: psycopg.Connection[Any]) -> list[datetime]:
    rows = conn.execute(
        sql.SQL("SELECT DISTINCT date_trunc('month', ts, 'UTC') FROM {}").format(sql.Identifier(DEFAULT))
    ).fetchall()
    return sorted(month_start(r[0]) for r in rows)


def create_partition(conn: psycopg.Connection[Any], month: datetime) -> str:
    """Make and attach the partition of `month`, moving that month's rows out of the default partition.
    One transaction; `conn` is an autocommit connection."""
    name = sql.Identifier(partition_name(month))
    lo, hi = month, add_months(month, 1)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(name))
        # proves the range to ATTACH, which then need not scan the new table
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT in_month CHECK (ts >= {} AND ts < {})").format(
            name, sql.Literal(lo), sql.Literal(hi)))
        if conn.execute(sql.SQL("SELECT 1 FROM {} WHERE ts >= %s AND ts < %s LIMIT 1").format(
                sql.Identifier(DEFAULT)), (lo, hi)).fetchone():
            # no insert into the default may slip in between the move and the attach's check of it
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(DEFAULT)))
            conn.execute(sql.SQL(
                "WITH moved AS (DELETE FROM {} WHERE ts >= %s AND ts < %s RETURNING *)"
                " INSERT INTO {} SELECT * FROM moved"
            ).format(sql.Identifier(DEFAULT), name), (lo, hi))
        conn.execute(sql.SQL("ALTER TABLE events ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            name, sql.Literal(lo), sql.Literal(hi)))
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT in_month").format(name))
    return partition_name(month)


def drop_partition(conn: psycopg.Connection[Any], month: datetime) -> str:
    """Forget a whole month: its event ids, then the partition itself (detached, dropped). One transaction."""
    name = partition_name(month)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        # before the detach: this scan of event_ids must not run under the ACCESS EXCLUSIVE lock on events
        conn.execute("DELETE FROM event_ids WHERE ts >= %s AND ts < %s", (month, add_months(month, 1)))
        conn.execute(sql.SQL("ALTER TABLE events DETACH PARTITION {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return name


@dataclass
class Maintained:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Partitions whose step timed out waiting for a lock (or failed otherwise): tried again next tick."""


def maintain(conn: psycopg.Connection[Any], now: datetime, retention_months: int | None) -> Maintained:
    """Make the coming months' partitions and those of months found in the default; then, with a
    retention, drop the partitions wholly older than `retention_months` before this month."""
    done = Maintained()
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (locks.PARTITIONS,)).fetchone()[0]:  # type: ignore[index]
        return done  # another worker is at it
    try:
        _maintain(conn, now, retention_months, done)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (locks.PARTITIONS,))
    if done.created or done.dropped:
        # not "created": a LogRecord attribute of that name exists, and `extra` may not overwrite it
        log.info("partitions.maintained", extra={"partitions_created": done.created,
                                                 "partitions_dropped": done.dropped})
    return done


def _maintain(conn: psycopg.Connection[Any], now: datetime, retention_months: int | None, done: Maintained) -> None:
    this_month = month_start(now)
    have = monthly_partitions(conn)
    wanted = {add_months(this_month, k) for k in range(AHEAD_MONTHS + 1)} | set(_months_in_default(conn))
    for month in sorted(wanted - have.keys()):
        try:
            done.created.append(create_partition(conn, month))
        except psycopg.Error as exc:
            done.failed.append(partition_name(month))
            log.warning("partitions.create_failed", extra={"partition": partition_name(month), "error": repr(exc)})
    if retention_months is not None:
        cutoff = add_months(this_month, -retention_months)
        for month in sorted(monthly_partitions(conn)):
            if add_months(month, 1) > cutoff:
                break
            try:
                done.dropped.append(drop_partition(conn, month))
            except psycopg.Error as exc:
                done.failed.append(partition_name(month))
                log.warning("partitions.drop_failed", extra={"partition": partition_name(month), "error": repr(exc)})
