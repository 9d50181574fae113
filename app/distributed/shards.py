"""User shards: contiguous ranges of the users table's order, each loaded straight from Postgres.

A shard's `Snapshot` holds only its shoppers: `log.user` counts from 0 within the shard, `log.user_ids`
are the shard's ids, items keep the catalogue-wide index (every shard joins the same items table). So
every per-shopper function of the in-process rebuild runs on a shard unchanged; `Shard.lo` maps a
shard's user index back to the whole shop's.

Consistency: the driver opens a REPEATABLE READ transaction, plans the shards and exports its snapshot
(`pg_export_snapshot`); every loader imports it, so all shards and the driver read one instant, and a
shard that Dask loads again after losing a worker reads that same instant. The driver keeps the
transaction open until the rebuild ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from app.db import libpq_url
from app.eventlog import EventLog
from app.worker.load import RECENT_TOMBSTONES, USERS_IN_RANGE, Catalog, Snapshot, UserRange, copy_events, read_catalog

#: Events per shard the driver aims at: a shard's log, its matrices and its scores fit a worker's memory
#: many times over, and there are enough shards to spread over the workers.
EVENTS_PER_SHARD = 2_000_000


@dataclass(frozen=True)
class Shard:
    """The user ids in [`low`, `high`) (None: open; the shards' ranges tile every id, so each event is
    read by one shard, an orphan's too): `n_users` users, whose index in the shop starts at `lo`."""

    index: int
    low: str | None
    high: str | None
    lo: int
    n_users: int

    @property
    def user_range(self) -> UserRange:
        return self.low, self.high

    @property
    def hi(self) -> int:
        return self.lo + self.n_users


@dataclass(frozen=True)
class ShardPlan:
    snapshot_name: str
    """The exported Postgres snapshot every loader imports."""
    now: float
    shards: list[Shard]
    catalog: Catalog
    item_ids: np.ndarray
    n_users: int
    n_events: int
    erasures: frozenset[Any]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


_PLAN_SQL = """
SELECT min(user_id), count(*)
FROM (SELECT user_id, ntile(%s) OVER (ORDER BY user_id) AS part FROM users) u
GROUP BY part ORDER BY part
"""


@contextmanager
def planned(database_url: str, now: float, n_shards: int | None = None, min_shards: int = 1) -> Iterator[ShardPlan]:
    """Plan the shards inside a REPEATABLE READ transaction whose snapshot stays exported (and so
    importable by the loaders) until the block ends. `n_shards` None: one per `EVENTS_PER_SHARD` events,
    at least `min_shards` (the workers' count, so each has one)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        name = str(row[0])
        n_events = _estimated_events(conn, now)
        if n_shards is None:
            n_shards = max(min_shards, -(-n_events // EVENTS_PER_SHARD))
        parts = conn.execute(_PLAN_SQL, (max(1, n_shards),)).fetchall()
        starts: list[str | None] = [None, *(str(first) for first, _ in parts[1:]), None]
        shards, lo = [], 0
        for k, (_, count) in enumerate(parts):
            shards.append(Shard(k, starts[k], starts[k + 1], lo, int(count)))
            lo += int(count)
        item_ids, catalog = read_catalog(conn)
        erasures = frozenset(conn.execute(RECENT_TOMBSTONES).fetchall())
        yield ShardPlan(name, now, shards, catalog, item_ids, lo, n_events, erasures)


def _estimated_events(conn: psycopg.Connection[Any], now: float) -> int:
    """Events up to `now`, counted: a few seconds at ten million rows, once per rebuild."""
    row = conn.execute("SELECT count(*) FROM events WHERE ts <= to_timestamp(%s)", (now,)).fetchone()
    return int(row[0]) if row else 0


_SHARD_USERS = "SELECT user_id, attributes FROM users {users} ORDER BY user_id"


def load_shard(database_url: str, plan: ShardPlan, shard: Shard) -> Snapshot:
    """The shard's shoppers, their attributes and every event of theirs up to `plan.now`, read in the
    driver's exported snapshot."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{plan.snapshot_name}'")  # a name Postgres made: no input
        low, high = shard.user_range
        rows = conn.execute(_SHARD_USERS.format(users=USERS_IN_RANGE), {"low": low, "high": high}).fetchall()
        if len(rows) != shard.n_users:
            raise RuntimeError(f"shard {shard.index}: {len(rows)} users where the plan counted {shard.n_users}")
        columns, orphans = copy_events(conn, plan.now, shard.user_range, keep_ids=True)
    user_ids = np.array([r[0] for r in rows], dtype=object)
    event_ids = columns.pop("id")
    return Snapshot(
        log=EventLog(**columns, user_ids=user_ids, item_ids=plan.item_ids),
        catalog=plan.catalog,
        user_attributes=[r[1] or {} for r in rows],
        now=plan.now,
        orphan_events=orphans,
        erasures=plan.erasures,
        event_ids=event_ids,
    )
