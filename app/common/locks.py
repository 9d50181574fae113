"""Postgres advisory locks Shopmind takes, each purpose under keys of its own.

Postgres keeps one-key (bigint) and two-key (int, int) advisory locks in separate key spaces: the
whole-database locks below use one key, the per-user locks two (a class, then a bucket).
"""

from __future__ import annotations

MIGRATIONS = 0x5348_4D00_0001
"""Held (session-level) around `alembic upgrade`: servers and workers starting at once migrate in turn."""

ERASURES = 0x5348_4D00_0002
"""Every erasure holds it shared until it commits; a rebuild takes it exclusive to wait for the
erasures in flight before it reads the tombstones and flips its version (`app.worker.erasures`)."""

PARTITIONS = 0x5348_4D00_0003
"""Tried (session-level) by a worker before it makes or drops event partitions: one worker at a time
does, the others skip the pass (`app.events.partitions`)."""

USER_CLASS = 0x5348
USER_BUCKETS = 64
"""Per-user locks are taken on one of 64 buckets of the user id's hash, not on the id itself: a 10,000-
event batch can name 10,000 shoppers, and 30,000 advisory locks exhaust a default Postgres's shared lock
table (measured: "out of shared memory"), for every client of the server. 64 is the lock count Postgres
budgets per transaction. A merge or erasure then waits for the batches in flight that touch its bucket."""

# The buckets are locked in ascending order (a sorted subquery feeds the lock calls), so two
# transactions locking several buckets never wait on each other in a cycle.
_USER_LOCKS = (
    "SELECT count({function}(" + str(USER_CLASS) + ", bucket)) FROM ("
    " SELECT DISTINCT hashtext(user_id) & " + str(USER_BUCKETS - 1) + " AS bucket"
    " FROM unnest(CAST({ids} AS text[])) AS user_id ORDER BY bucket) AS buckets"
)

INGEST_USER_LOCKS = _USER_LOCKS.format(function="pg_advisory_xact_lock_shared", ids="%s")
"""psycopg SQL, parameter: the batch's user ids. Ingest batches share the locks with each other; they
only wait for (and hold off) a merge or erasure of one of their shoppers."""

INGEST_ONE_USER_LOCK = (
    f"SELECT pg_advisory_xact_lock_shared({USER_CLASS}, hashtext(%s) & {USER_BUCKETS - 1})"
)
"""INGEST_USER_LOCKS for a batch of one shopper (parameter: the id): a single-event post is the common
call, and this costs it half as much (~45 us instead of ~85 us a pipelined flight, measured)."""

WRITE_USER_LOCKS = _USER_LOCKS.format(function="pg_advisory_xact_lock", ids=":user_ids")
"""SQLAlchemy SQL, parameter `user_ids`: a merge or erasure excludes every other writer of its users
until it commits, so no event can commit for a user whose row it deletes."""
