"""The events-partitioning migration (0009) on a populated database: how long up and down take.

    python bench/migrate_events.py [--rows 1000000] [--months 14]

Makes a scratch database at revision 0008 (one plain `events` table), COPYs `--rows` events spread
over the last `--months` months (and a few in 2003) into it, then times `alembic upgrade head`
(partitioned `events` and `event_ids`) and `alembic downgrade 0008`, checking after each that every
row is there unchanged (count and an order-free checksum of whole rows) and, after the upgrade, that
every id is in `event_ids` and no row was left in the default partition.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.migrate import alembic_config, upgrade

TYPES = ("view", "view", "view", "click", "add_to_cart", "purchase", "rating")
FINGERPRINT = "SELECT count(*), sum(hashtextextended(e::text, 0)) FROM events e"


def fill(conn: psycopg.Connection[tuple[object, ...]], rows: int, months: int) -> None:
    """COPY `rows` events into the (pre-0009) events table: spread over the last `months` months, one
    in 500 in 2003; some with a value, a price, a recommendation id or properties."""
    now = datetime.now(UTC)
    span = months * 30 * 86400
    with conn.cursor() as cur, cur.copy(
        "COPY events (event_id, user_id, item_id, type, value, price, ts, session_id, recommendation_id,"
        " properties) FROM STDIN"
    ) as copy:
        buf = io.StringIO()
        for k in range(rows):
            at = datetime(2003, 1 + k % 12, 7, tzinfo=UTC) if k % 500 == 0 else now - timedelta(
                seconds=(k * 7919) % span)
            kind = TYPES[k % len(TYPES)]
            value = "4.5" if kind == "rating" else ("2" if kind == "add_to_cart" else "\\N")
            price = f"{(k % 97) + 0.99:.2f}" if kind == "purchase" else "\\N"
            rec = f"r{k % 1000}.v1.t{k % 3}" if k % 10 == 0 else "\\N"
            props = '{"src": "bench"}' if k % 50 == 0 else "\\N"
            buf.write(f"e{k}\tu{k % 50_000}\ti{k % 20_000}\t{kind}\t{value}\t{price}\t{at.isoformat()}"
                      f"\ts{k // 20}\t{rec}\t{props}\n")
            if k % 100_000 == 99_999:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=14)
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    from alembic import command
    from sqlalchemy.engine import make_url

    name = f"shopmind_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, "0008")
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            fill(conn, args.rows, args.months)
            conn.execute("VACUUM ANALYZE events")
            print(f"fill           {args.rows:,} rows by COPY (with the 0008 indexes): {time.perf_counter() - start:.1f} s")
            before = conn.execute(FINGERPRINT).fetchone()

        start = time.perf_counter()
        upgrade(url)
        took = time.perf_counter() - start
        with psycopg.connect(url, autocommit=True) as conn:
            after = conn.execute(FINGERPRINT).fetchone()
            parts = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass").fetchone()
            default = conn.execute("SELECT count(*) FROM events_default").fetchone()
            ids = conn.execute("SELECT count(*) FROM event_ids i JOIN events e USING (event_id, ts)").fetchone()
        assert after == before, (before, after)
        assert ids == (args.rows,) and default == (0,), (ids, default)
        print(f"upgrade 0009   {took:.1f} s: {parts[0] if parts else 0} partitions, every row and id kept")

        start = time.perf_counter()
        command.downgrade(alembic_config(url), "0008")
        took = time.perf_counter() - start
        with psycopg.connect(url, autocommit=True) as conn:
            back = conn.execute(FINGERPRINT).fetchone()
        assert back == before, (before, back)
        print(f"downgrade 0008 {took:.1f} s: one plain table again, every row kept")
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
