"""Read the source of truth (Postgres) into dense numpy arrays for a rebuild.

Events stream as one binary COPY whose fixed-size rows numpy reads directly; Postgres joins the
string ids to their dense indices. Users and items come from their tables, so shoppers and products
without events still get an index (propensity scores every user; content covers every item).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from app.eventlog import TYPE_CODE, EventLog

log = logging.getLogger(__name__)

# One event as COPY ... (FORMAT binary) sends it: a field count, then (length, big-endian value) per
# field. Every field is NOT NULL by construction, so every row has this exact size.
_ROW = np.dtype([
    ("n", ">i2"), ("l_user", ">i4"), ("user", ">i4"), ("l_item", ">i4"), ("item", ">i4"),
    ("l_type", ">i4"), ("type", ">i2"), ("l_value", ">i4"), ("value", ">f8"), ("l_price", ">i4"),
    ("price", ">f8"), ("l_ts", ">i4"), ("ts", ">f8"), ("l_session", ">i4"), ("session", ">i4"),
    ("l_id", ">i4"), ("id", ">i8"),
])  # fmt: skip
_HEADER = 19  # signature (11), flags (4), header extension length (4)
_PARSE_BYTES = 64 * 1024 * 1024
_TYPE_CASE = " ".join(f"WHEN '{name}' THEN {code}" for name, code in TYPE_CODE.items())
# Dense indices are joined in Postgres (row_number in the same ORDER BY as the id tables above), so
# ten million events cross the wire as fixed-size binary rows and never become Python objects.
_EVENTS_SQL = f"""
COPY (
  SELECT coalesce(u.idx, -1)::int4,
         CASE WHEN e.item_id IS NULL THEN -1 ELSE coalesce(i.idx, -2) END::int4,
         CASE e.type {_TYPE_CASE} ELSE -1 END::int2,
         coalesce(e.value, 'NaN')::float8, coalesce(e.price, 'NaN')::float8,
         extract(epoch FROM e.ts)::float8, coalesce(s.idx, -1)::int4, e.id
  FROM events e
  LEFT JOIN (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS idx FROM users {{users}}) u USING (user_id)
  LEFT JOIN (SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS idx FROM items) i USING (item_id)
  LEFT JOIN (SELECT session_id, row_number() OVER () - 1 AS idx
             FROM (SELECT DISTINCT session_id FROM events WHERE session_id IS NOT NULL {{and_events}}) d) s
       USING (session_id)
  WHERE e.ts <= to_timestamp(%(now)s) {{and_events}}
) TO STDOUT (FORMAT binary)
"""
UserRange = tuple[str | None, str | None]
"""[low, high) of user ids, either end None when open: a user shard's (`app.distributed.shards`)."""

# A user shard (`app.distributed.shards`): its users are indexed from 0, its events only are read.
# [low, high), either end open when None (COPY binds on the client, so the planner sees the NULL).
_IN_RANGE = "(%(low)s::text IS NULL OR user_id >= %(low)s) AND (%(high)s::text IS NULL OR user_id < %(high)s)"
USERS_IN_RANGE = f"WHERE {_IN_RANGE}"
_EVENTS_IN_RANGE = f"AND {_IN_RANGE}"


@dataclass(frozen=True)
class Catalog:
    """Item rows aligned with EventLog.item_ids (index k describes item k)."""

    items: list[dict[str, Any]]
    eligible: NDArray[np.bool_]  # not deleted and available
    deleted: NDArray[np.bool_]


@dataclass(frozen=True)
class Snapshot:
    log: EventLog
    catalog: Catalog
    user_attributes: list[dict[str, Any]]
    now: float
    orphan_events: int = 0
    """Events left out because their user's or item's row is gone."""
    erasures: frozenset[tuple[str, datetime]] = frozenset()
    """(user, erased_at) of the recent tombstones this snapshot saw (`app.worker.erasures`)."""
    event_ids: NDArray[np.int64] | None = None
    """A user shard's events' ids (`app.distributed`): shards' logs merge in the order of the whole one."""


RECENT_TOMBSTONES = "SELECT user_id, erased_at FROM user_erasures WHERE erased_at > now() - interval '1 day'"
"""The tombstones a snapshot notes and a rebuild compares with it: a day is longer than any erasure's
transaction, so an erasure the snapshot missed is always among them."""

_COLUMNS = {"user": np.int32, "item": np.int32, "type": np.int8, "value": np.float32, "price": np.float32,
            "ts": np.float64, "session": np.int32, "id": np.int64}  # fmt: skip


def copy_events(
    conn: psycopg.Connection[Any], now: float, user_range: UserRange | None = None, keep_ids: bool = False
) -> tuple[dict[str, NDArray[Any]], int]:
    """Every event up to `now` as EventLog-typed columns (`_COLUMNS` but the id), oldest first (in the
    order they were stored within an instant: a bulk import stamps every event alike, and an order
    within a tie reaches the models, so it must be the same whether the log is read whole or in user
    shards, `app.distributed`), and the number of
    orphan events (of a user or item that has no row) left out. `user_range`: (low, high) user ids,
    `low <= user_id < high`, an end None when open: only those users' events (orphans included),
    user indices counted from the first. `keep_ids`: the events'
    ids stay, as column "id" (to merge shards in this order)."""
    parts: dict[str, list[NDArray[Any]]] = {name: [] for name in _COLUMNS}
    pending = bytearray()
    skip = _HEADER

    def parse(final: bool) -> None:
        """Rows received so far -> compact columns (37 bytes an event instead of 80 on the wire)."""
        nonlocal pending, skip
        body = memoryview(pending)[skip : len(pending) - (2 if final else 0)]  # the trailer is int16 -1
        whole = len(body) // _ROW.itemsize * _ROW.itemsize
        rows = np.frombuffer(body[:whole], dtype=_ROW)
        for name, dtype in _COLUMNS.items():
            parts[name].append(rows[name].astype(dtype))
        del rows
        pending = bytearray(body[whole:])
        skip = 0

    with conn.transaction(), conn.cursor() as cur:
        # the joins' hash tables stay in memory instead of spilling to disk in batches; JIT
        # compiling this plan costs more than it saves
        cur.execute("SET LOCAL work_mem = '1GB'")
        cur.execute("SET LOCAL jit = off")
        users, and_events = (USERS_IN_RANGE, _EVENTS_IN_RANGE) if user_range else ("", "")
        query = _EVENTS_SQL.format(users=users, and_events=and_events)
        low, high = user_range or (None, None)
        with cur.copy(query, {"now": now, "low": low, "high": high}) as copy:
            for chunk in copy:
                pending += chunk
                if len(pending) >= _PARSE_BYTES:
                    parse(final=False)
    parse(final=True)
    columns = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    parts.clear()
    if (columns["type"] < 0).any():
        raise ValueError("events of unknown event types")
    # Orphans: events whose user or item row is gone (deleted by hand, or by a writer that did not
    # take the user's lock). They cannot be placed in the matrices; dropping them beats failing every
    # rebuild until someone edits the data. `orphans` reports how many.
    placed = (columns["user"] >= 0) & (columns["item"] >= -1)
    orphans = int(len(placed) - np.count_nonzero(placed))
    order = np.lexsort((columns["id"] if keep_ids else columns.pop("id"), columns["ts"]))  # cheaper than in Postgres
    if orphans:
        order = order[placed[order]]
    return {name: col[order] for name, col in columns.items()}, orphans


def analyze_unanalyzed(conn: psycopg.Connection[Any]) -> None:
    """Tables (and the events' monthly partitions) bulk-loaded since autovacuum last ran have no
    statistics: the planner then guesses a few thousand users and hashes the ten million joined events
    instead (48 s instead of 18 s)."""
    never = conn.execute(
        "SELECT relname FROM pg_class WHERE reltuples < 0"
        " AND (oid IN (to_regclass('users'), to_regclass('items'), to_regclass('events'))"
        "      OR oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass('events')))"
    ).fetchall()
    for (table,) in never:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def load_snapshot(conn: psycopg.Connection[Any], now: float | None = None) -> Snapshot:
    """Users, items and every event up to `now`, read in one REPEATABLE READ transaction.

    The events' dense indices are joined in Postgres against the users and items tables, so all three
    reads must see the same instant: a shopper or item that ingest creates between them would shift
    every index after it and hand events to the wrong shopper or item. `conn` is an autocommit
    connection (or one idle outside a transaction); call `analyze_unanalyzed` first on a freshly
    bulk-loaded database.
    """
    now = time.time() if now is None else now
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _read(conn, now)


def read_catalog(conn: psycopg.Connection[Any]) -> tuple[NDArray[np.object_], Catalog]:
    """Every item (deleted ones too: their index must not shift) in the order events are indexed by."""
    item_rows = conn.execute(
        "SELECT item_id, title, description, categories, tags, brand, price, available, attributes,"
        " deleted_at IS NOT NULL FROM items ORDER BY item_id"
    ).fetchall()
    items = [
        {"item_id": r[0], "title": r[1], "description": r[2], "categories": list(r[3] or []),
         "tags": list(r[4] or []), "brand": r[5], "price": r[6], "available": r[7], "attributes": r[8] or {}}
        for r in item_rows
    ]
    item_ids = np.array([r[0] for r in item_rows], dtype=object)
    deleted = np.array([bool(r[9]) for r in item_rows], dtype=bool)
    available = np.array([bool(r[7]) for r in item_rows], dtype=bool)
    return item_ids, Catalog(items=items, eligible=available & ~deleted, deleted=deleted)


def _read(conn: psycopg.Connection[Any], now: float) -> Snapshot:
    erasures = conn.execute(RECENT_TOMBSTONES).fetchall()
    user_rows = conn.execute("SELECT user_id, attributes FROM users ORDER BY user_id").fetchall()
    user_ids = np.array([r[0] for r in user_rows], dtype=object)
    item_ids, catalog = read_catalog(conn)
    columns, orphans = copy_events(conn, now)
    if orphans:
        log.warning("rebuild.orphan_events", extra={"events": orphans})
    return Snapshot(
        log=EventLog(**columns, user_ids=user_ids, item_ids=item_ids), catalog=catalog,
        user_attributes=[r[1] or {} for r in user_rows], now=now, orphan_events=orphans,
        erasures=frozenset((user, at) for user, at in erasures),
    )
