"""Migration 0009 (events partitioned by month) on a populated database, up and down: every row kept,
de-duplication still right, ids still from the same sequence. 50,000 rows here; bench/migrate_events.py
runs the same on 1M and prints the times (README)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.events import partitions
from app.main import create_app
from app.migrate import alembic_config, upgrade
from app.settings import Settings
from tests import servers
from tests.conftest import ADMIN_KEY

ROWS = 50_000
FINGERPRINT = "SELECT count(*), sum(hashtextextended(e::text, 0)) FROM events e"  # whole rows, order-free
NOW = datetime.now(UTC)


@pytest.fixture
def at_0008() -> Iterator[str]:
    admin = servers.postgres_admin_url()
    url, name = servers.create_scratch_database(admin)
    upgrade(url, "0008")
    yield url
    servers.drop_database(admin, name)


def _fill(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """ROWS events by COPY over the last 14 months, one in 500 in 2003, with every column used."""
    buf = io.StringIO()
    for k in range(ROWS):
        at = datetime(2003, 1 + k % 3, 7, tzinfo=UTC) if k % 500 == 0 else NOW - timedelta(
            seconds=(k * 7919) % (14 * 30 * 86400))
        value, price = ("2", f"{k % 97}.5") if k % 7 == 0 else ("\\N", "\\N")
        props = f'{{"k": {k}}}' if k % 50 == 0 else "\\N"
        rec = f"r{k}.v1.t1" if k % 10 == 0 else "\\N"
        buf.write(f"e{k}\tu{k % 997}\ti{k % 301}\tview\t{value}\t{price}\t{at.isoformat()}\ts{k // 20}\t{rec}\t{props}\n")
    with conn.cursor() as cur, cur.copy(
        "COPY events (event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id, properties)"
        " FROM STDIN"
    ) as copy:
        copy.write(buf.getvalue())


def _months(conn: psycopg.Connection[tuple[object, ...]]) -> set[datetime]:
    rows = conn.execute("SELECT DISTINCT date_trunc('month', ts, 'UTC') FROM events").fetchall()
    return {partitions.month_start(r[0]) for r in rows}  # type: ignore[arg-type]


def test_the_partitioning_migration_keeps_every_row_and_deduplicates(
    at_0008: str, redis_url: str, redis_prefix: str
) -> None:
    with psycopg.connect(at_0008, autocommit=True) as conn:
        _fill(conn)
        before = conn.execute(FINGERPRINT).fetchone()
        months = _months(conn)
        last_id = conn.execute("SELECT max(id) FROM events").fetchone()
    assert before is not None and before[0] == ROWS and len(months) >= 15

    upgrade(at_0008)
    with psycopg.connect(at_0008, autocommit=True) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass").fetchone() == ("p",)
        assert conn.execute(FINGERPRINT).fetchone() == before
        assert months <= set(partitions.monthly_partitions(conn))
        assert conn.execute("SELECT count(*) FROM events_default").fetchone() == (0,)
        # every row in the partition of its month
        misplaced = conn.execute(
            "SELECT count(*) FROM events WHERE tableoid::regclass::text"
            " <> 'events_p' || to_char(ts AT TIME ZONE 'UTC', 'YYYYMM')").fetchone()
        assert misplaced == (0,)
        assert conn.execute("SELECT count(*) FROM event_ids i JOIN events e USING (event_id, ts)").fetchone() == (ROWS,)
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone() == (ROWS,)

    settings = Settings(database_url=at_0008, redis_url=redis_url, redis_prefix=redis_prefix,
                        admin_key=SecretStr(ADMIN_KEY), _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        old = {"event_id": "e123", "user_id": "u1", "item_id": "i1", "type": "view"}  # stored months ago
        new = {"event_id": "fresh", "user_id": "u1", "item_id": "i1", "type": "view"}
        body = client.post("/v1/events", json={"events": [old, new]}).json()
        assert (body["accepted"], body["duplicate_event_ids"]) == (1, ["e123"])
        many = [{**new, "event_id": f"e{k}"} for k in range(100, 160)]  # the COPY path
        body = client.post("/v1/events", json={"events": many}).json()
        assert (body["accepted"], body["duplicates"]) == (0, 60)
    with psycopg.connect(at_0008, autocommit=True) as conn:
        fresh = conn.execute("SELECT id FROM events WHERE event_id = 'fresh'").fetchone()
        assert fresh is not None and last_id is not None and fresh[0] > last_id[0]  # the same sequence goes on
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (ROWS + 1,)
        conn.execute("DELETE FROM events WHERE event_id = 'fresh'")
        conn.execute("DELETE FROM event_ids WHERE event_id = 'fresh'")

    command.downgrade(alembic_config(at_0008), "0008")
    with psycopg.connect(at_0008, autocommit=True) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass").fetchone() == ("r",)
        assert conn.execute(FINGERPRINT).fetchone() == before
        assert conn.execute("SELECT to_regclass('event_ids'), to_regclass('events_default')").fetchone() == (None, None)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO events (event_id, user_id, type, ts) VALUES ('e1', 'u', 'view', now())")

    upgrade(at_0008)  # and up again
    with psycopg.connect(at_0008, autocommit=True) as conn:
        assert conn.execute(FINGERPRINT).fetchone() == before
