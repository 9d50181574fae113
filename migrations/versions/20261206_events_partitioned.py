"""events: partitioned by month on ts; event_id kept unique by a separate event_ids table (issue 17)

`events` becomes a declaratively RANGE-partitioned table on `ts`, one partition a calendar month (UTC)
named `events_pYYYYMM`, plus a DEFAULT partition so that no timestamp is ever refused. The worker makes
the coming months' partitions and splits months out of the default (`app.events.partitions`);
retention detaches and drops whole partitions.

De-duplication. A unique index on a partitioned table must contain the partition key, so
`UNIQUE (event_id)` cannot stay on `events`. Two ways were weighed:

- a deterministic id-to-time rule (the partition key derived from the id, so that `(event_id, ts)`
  is unique per id): event ids are the shops' own strings (order numbers, UUIDv4s) that say nothing
  of time, and an event sent without a timestamp gets "now", so a retry of it carries another `ts`:
  `UNIQUE (event_id, ts)` would store it twice. Rejected.
- `event_ids (event_id PRIMARY KEY, ts)`: every stored event's id, written by ingest in the same
  transaction as the event (COPY when the batch is new, INSERT … ON CONFLICT DO NOTHING RETURNING
  to learn which ids are new otherwise). The unique key costs what `uq_events_event_id` cost
  before, plus a narrow heap row; `ts` lets retention forget the ids of the months it drops, and
  erasure deletes a shopper's ids with their events. Chosen.

The primary key becomes `(id, ts)` (it too must hold the partition key); `id` still comes from the
same sequence, so it stays unique and ordered as before.

Upgrade on a populated table: the old table is renamed, the partitioned one created without indexes,
one partition per month the data holds (plus this month and the next three) and the default made, the
rows moved with one INSERT … SELECT, and the indexes built afterwards (faster than maintaining them
row by row). 1M rows: see bench/migrate_events.py and the README. Downgrade moves them back into one
plain table with `UNIQUE (event_id)`, which the event_ids table guarantees holds.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("id, event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id, properties,"
            " received_at")
_TYPE_CHECK = ("type IN ('view', 'click', 'add_to_cart', 'remove_from_cart', 'purchase', 'rating', 'like',"
               " 'dislike', 'bookmark')")
_DEFINITION = f"""
    id bigint NOT NULL DEFAULT nextval('events_id_seq'::regclass),
    event_id varchar(256) NOT NULL,
    user_id varchar(256) NOT NULL,
    item_id varchar(256),
    type varchar(32) NOT NULL,
    value double precision,
    price double precision,
    ts timestamptz NOT NULL,
    session_id varchar(256),
    recommendation_id varchar(64),
    properties jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_events_type_known CHECK ({_TYPE_CHECK})
"""
_INDEXES = (
    "CREATE INDEX ix_events_ts ON events (ts)",
    "CREATE INDEX ix_events_user_id_ts ON events (user_id, ts)",
    "CREATE INDEX ix_events_recommendation_id ON events (recommendation_id) WHERE recommendation_id IS NOT NULL",
)
# One partition per month with rows, and this month and the next three (the worker keeps that up).
_MAKE_PARTITIONS = """
DO $$
DECLARE
    m timestamptz;
BEGIN
    FOR m IN
        SELECT DISTINCT date_trunc('month', ts, 'UTC') FROM events_unpartitioned
        UNION
        SELECT date_trunc('month', now(), 'UTC') + k * interval '1 month' FROM generate_series(0, 3) AS k
        ORDER BY 1
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       'events_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM'), m,
                       (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
    END LOOP;
END $$
"""


def upgrade() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    # free the names the partitioned table's constraints and indexes take
    op.execute("ALTER TABLE events_unpartitioned DROP CONSTRAINT pk_events, DROP CONSTRAINT uq_events_event_id")
    for index in ("ix_events_ts", "ix_events_user_id_ts", "ix_events_recommendation_id"):
        op.execute(f"DROP INDEX {index}")
    op.execute(f"CREATE TABLE events ({_DEFINITION}) PARTITION BY RANGE (ts)")
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")  # before the old table, its owner, goes
    op.execute(_MAKE_PARTITIONS)
    op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    op.execute(f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM events_unpartitioned")
    op.execute("CREATE TABLE event_ids (event_id varchar(256) NOT NULL, ts timestamptz NOT NULL)")
    op.execute("INSERT INTO event_ids (event_id, ts) SELECT event_id, ts FROM events_unpartitioned")
    op.execute("ALTER TABLE event_ids ADD CONSTRAINT pk_event_ids PRIMARY KEY (event_id)")
    op.execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id, ts)")
    for statement in _INDEXES:
        op.execute(statement)
    op.execute("DROP TABLE events_unpartitioned")
    op.execute("ANALYZE events")  # autovacuum analyzes the partitions, never the partitioned parent


def downgrade() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute("ALTER TABLE events RENAME TO events_partitioned")
    op.execute("ALTER TABLE events_partitioned DROP CONSTRAINT pk_events")
    for index in ("ix_events_ts", "ix_events_user_id_ts", "ix_events_recommendation_id"):
        op.execute(f"DROP INDEX {index}")
    op.execute(f"CREATE TABLE events ({_DEFINITION})")
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
    op.execute(f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM events_partitioned")
    op.execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (id),"
               " ADD CONSTRAINT uq_events_event_id UNIQUE (event_id)")
    for statement in _INDEXES:
        op.execute(statement)
    op.execute("DROP TABLE events_partitioned")  # and its partitions
    op.execute("DROP TABLE event_ids")
