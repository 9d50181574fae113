"""Writing a checked batch to Postgres in one transaction: its new users and items, then its events.

Users and items this process stored before are skipped (`app.events.known`).

`events` is partitioned by month and cannot hold `event_id` unique, so every stored event's id also
goes into `event_ids`, whose primary key is the de-duplication (`app.events.models.EventId`). A batch
of new events (the usual case) is binary-COPYed: its ids into `event_ids`, then its rows straight into
`events` (Postgres routes each to its month). Only when the primary key of `event_ids` objects — the
batch repeats events already stored, say a client's retry — is the batch redone through a staging
table: INSERT … ON CONFLICT DO NOTHING RETURNING into `event_ids` says which ids are new, and only
those rows go into `events`, in the same statement. Rows go in sorted by event_id and ids sorted, so
concurrent batches take their locks in one order and never deadlock.

A small batch (a shop posting each event as it happens) is dominated by exchanges with Postgres, not
rows: it goes as three INSERT … ON CONFLICT statements (users, items, then event ids and events in
one) sent in one pipelined flight with its BEGIN and COMMIT: one exchange where the COPY path takes
eight.

Every batch first takes its shoppers' advisory locks, shared (`app.common.locks`): a merge or erasure
deleting one of them waits for the batch to commit, and a batch waits for the merge, then sees the row
gone and stores it afresh. Without foreign keys, an event could otherwise commit for a user row a merge
had just deleted, and every rebuild after it found events of an unknown user.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

from psycopg import AsyncCursor
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncEngine

from app.common.locks import INGEST_ONE_USER_LOCK, INGEST_USER_LOCKS
from app.events.known import DELETIONS_QUERY, known_ids
from app.events.validate import COLUMN_TYPES, COLUMNS, COPY_TYPES, EventRow
from app.triggers import arming

_COLUMN_LIST = ", ".join(COLUMNS)
_EVENT_ID, _USER_ID, _ITEM_ID = itemgetter(0), itemgetter(1), itemgetter(2)
_INSERT_USERS = "INSERT INTO users (user_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING"
_INSERT_ITEMS = "INSERT INTO items (item_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING item_id"
SMALL_BATCH = 32
"""Batches up to this many events take the pipelined INSERT path; larger ones COPY."""
_INSERT_EVENTS = f"""
WITH x AS (
    SELECT e, u, i, t, v, p, timestamptz '2000-01-01 00:00:00+00' + us * interval '1 microsecond' AS ts, s, r, props
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::int8[],
                %s::text[], %s::text[], %s::jsonb[]) AS x(e, u, i, t, v, p, us, s, r, props)
), new AS (
    INSERT INTO event_ids (event_id, ts) SELECT e, ts FROM x ORDER BY e ON CONFLICT DO NOTHING RETURNING event_id
)
INSERT INTO events ({_COLUMN_LIST})
SELECT e, u, i, t, v, p, ts, s, r, props FROM x JOIN new ON new.event_id = x.e ORDER BY e
RETURNING event_id
"""
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_stage ("
    + ", ".join(f"{name} {kind}" for name, kind in zip(COLUMNS, COLUMN_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS"
)
_FROM_STAGE = f"""
WITH new AS (
    INSERT INTO event_ids (event_id, ts) SELECT event_id, ts FROM ingest_stage ORDER BY event_id
    ON CONFLICT DO NOTHING RETURNING event_id
)
INSERT INTO events ({_COLUMN_LIST})
SELECT {", ".join(f"s.{c}" for c in COLUMNS)} FROM ingest_stage s JOIN new USING (event_id) ORDER BY event_id
RETURNING event_id
"""
_ID_TYPES = [COPY_TYPES[COLUMNS.index("event_id")], COPY_TYPES[COLUMNS.index("ts")]]


@dataclass(frozen=True)
class Written:
    rows: list[EventRow]
    """The rows stored now; the others were stored before (duplicates)."""
    created_items: list[str]


async def _copy(cur: AsyncCursor[tuple[object, ...]], table: str, rows: list[EventRow]) -> None:
    async with cur.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(COPY_TYPES))
        write_row = copy.write_row
        for row in rows:
            await write_row(row[:-1])


async def _copy_ids(cur: AsyncCursor[tuple[object, ...]], rows: list[EventRow]) -> None:
    async with cur.copy("COPY event_ids (event_id, ts) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_ID_TYPES)
        write_row = copy.write_row
        for row in rows:
            await write_row((row.event_id, row.ts))


async def _write(engine: AsyncEngine, rows: list[EventRow], through_stage: bool, kinds: frozenset[str]) -> Written:
    known = known_ids(engine.url.render_as_string())
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.cursor() as cur:
            user_ids = sorted(set(map(_USER_ID, rows)))
            # before the deletion counter: a merge we waited for must show in it
            await cur.execute(INGEST_USER_LOCKS, (user_ids,))
            await cur.execute(DELETIONS_QUERY)
            deletions = (await cur.fetchone() or (0,))[0]
            item_ids = set(map(_ITEM_ID, rows))
            item_ids.discard(None)  # an order-level purchase
            users, items = known.unknown(deletions, set(user_ids), item_ids)
            created: list[str] = []
            if users:
                await cur.execute(_INSERT_USERS, (users,))
            if items:
                await cur.execute(_INSERT_ITEMS, (items,))
                created = [r[0] for r in await cur.fetchall()]
            if through_stage:
                await cur.execute(_STAGE)
                await _copy(cur, "ingest_stage", rows)
                await cur.execute(_FROM_STAGE)
                new = {r[0] for r in await cur.fetchall()}
                rows = [r for r in rows if r.event_id in new]
            else:
                await _copy_ids(cur, rows)  # first: a repeated id fails the batch before its rows are sent
                await _copy(cur, "events", rows)
            for statement, params in arming.statements(kinds, rows):
                await cur.execute(statement, params)
    known.stored(deletions, users, items)
    return Written(rows, created)


async def _write_small(engine: AsyncEngine, rows: list[EventRow], kinds: frozenset[str]) -> Written:
    users = sorted(set(map(_USER_ID, rows)))
    items = sorted({r.item_id for r in rows if r.item_id is not None})
    columns = [list(column) for column in zip(*(row[:-1] for row in rows), strict=True)]
    columns[-1] = [None if p is None else Jsonb(p) for p in columns[-1]]
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        async with pg.pipeline():
            if len(users) == 1:
                await pg.execute(INGEST_ONE_USER_LOCK, (users[0],))
            else:
                await pg.execute(INGEST_USER_LOCKS, (users,))
            await pg.execute(_INSERT_USERS, (users,))
            created = await pg.execute(_INSERT_ITEMS, (items,))
            stored = await pg.execute(_INSERT_EVENTS, columns)
            for statement, params in arming.statements(kinds, rows):
                await pg.execute(statement, params)
            await pg.commit()
        created_items = [r[0] for r in await created.fetchall()]
        new = {r[0] for r in await stored.fetchall()}
    return Written([r for r in rows if r.event_id in new], created_items)


async def write_events(engine: AsyncEngine, rows: list[EventRow], kinds: frozenset[str] = frozenset()) -> Written:
    """Store the rows whose event_id is new; commits before returning. `kinds`: the trigger kinds
    defined, whose arming statements run in the same transaction (`app.triggers.arming`)."""
    rows = sorted(rows, key=_EVENT_ID)
    if len(rows) <= SMALL_BATCH:
        return await _write_small(engine, rows, kinds)
    try:
        return await _write(engine, rows, through_stage=False, kinds=kinds)
    except UniqueViolation:
        return await _write(engine, rows, through_stage=True, kinds=kinds)
