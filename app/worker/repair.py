"""Bring Redis back in line with Postgres after it missed writes (`redis_skips`, see `app.fallback`).

While Redis is unreachable the API still commits item upserts and events to Postgres and skips their
Redis side: item metadata (new items, availability), recent histories, purchase and seen sets. If Redis
comes back with its data (a network partition, a restart with persistence), its hydration sentinel is
still there and nothing would ever re-hydrate it. So the rebuild reads the highest skip id before its
snapshot (every skip recorded by then is of a write committed earlier, hence in the snapshot),
re-hydrates from the snapshot, and deletes the skips up to that id; skips recorded meanwhile stay for
the next rebuild. The worker loop also starts a rebuild as soon as it sees skips while Redis answers,
instead of waiting for the schedule.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from app.db import libpq_url

log = logging.getLogger(__name__)


def pending(conn: psycopg.Connection[Any]) -> int | None:
    """The highest skip id recorded so far, None when Redis missed nothing. Read before the snapshot."""
    row = conn.execute("SELECT max(id) FROM redis_skips").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def covered(conn: psycopg.Connection[Any], upto: int | None) -> None:
    """The skips up to `upto` are repaired: forget them (later ones wait for the next rebuild)."""
    if upto is not None:
        conn.execute("DELETE FROM redis_skips WHERE id <= %s", (upto,))
        log.info("rebuild.redis_repaired", extra={"upto": upto})


def needed(database_url: str) -> bool:
    """Whether Redis missed writes, for the worker loop; False (logged) when Postgres is unreachable."""
    try:
        with psycopg.connect(libpq_url(database_url), autocommit=True, connect_timeout=5) as conn:
            return pending(conn) is not None
    except psycopg.Error as exc:
        log.warning("worker.postgres_unavailable", extra={"error": type(exc).__name__})
        return False
