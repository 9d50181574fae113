"""Erasures made while a rebuild runs: kept out of the version it publishes and the state it hydrates.

A rebuild reads Postgres at one instant (its snapshot) and publishes minutes later. A shopper erased
in between is still in what it read, and the API's erasure cleared only the versions that existed
then. So every erasure leaves a tombstone (`user_erasures`, with the time), the snapshot notes the
tombstones it saw, and the rebuild erases the users of the newer ones from its version before the
pointer flip (`app.store.erasure`), and from the real-time state it hydrated.

Tombstones are compared by (user, time) rather than by time alone: an erasure's transaction can start
before the snapshot and commit after it, so its time does not tell which side of the snapshot it is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import redis

from app.common import locks
from app.store.keys import Keys
from app.worker.load import RECENT_TOMBSTONES, Snapshot

KEEP_DAYS = 7
"""Tombstones older than this are pruned: a rebuild runs for minutes, and the id is personal data."""


@contextmanager
def settled(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Wait for the erasures in flight to commit (or fail), and hold new ones off until the block ends.

    Each erasure holds `locks.ERASURES` shared from before it clears Redis until it commits. Inside
    the block every erasure that already touched Redis has its tombstone readable; one that starts
    after the block finds the new version registered and erases it there itself.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (locks.ERASURES,))
        yield


def since(conn: psycopg.Connection[Any], snapshot: Snapshot) -> list[str]:
    """The users erased after `snapshot` was read (call inside `settled` to include those in flight)."""
    rows = conn.execute(RECENT_TOMBSTONES).fetchall()
    return sorted({user for user, at in rows if (user, at) not in snapshot.erasures})


def erase_realtime(client: redis.Redis, keys: Keys, users: list[str]) -> None:
    """Drop the users' real-time keys (history, purchases, seen) that a hydration may have refilled."""
    if users:
        client.delete(*(key for user in users for key in keys.user_keys(user)))


def prune(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"DELETE FROM user_erasures WHERE erased_at < now() - interval '{KEEP_DAYS} days'")
