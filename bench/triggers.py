"""What defining triggers costs ingest's Postgres transaction: batches written with and without them.

    python bench/triggers.py [--events 100000] [--batch 1000] [--rounds 5]

Writes the same batches through ingest's own write path (`app.events.store.write_events`, COPY for
batches over 32 events) into a scratch database, alternately with no trigger kind defined and with a
cart_abandoned and a browse_abandoned trigger (30-day delays, every event within the last 20 days, so
every cart arms a pending row and every purchase runs the cancelling statement), one batch at a time,
--rounds times each. Alternating and taking medians keeps the comparison fair on a box whose speed
drifts; the end-to-end figure over HTTP is `bench/ingest.py --triggers`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.db import make_async_engine
from app.events.store import write_events
from app.events.validate import check_batch
from app.settings import Settings
from bench._server import scratch_database
from bench.ingest import make_events

KINDS = frozenset({"cart_abandoned", "browse_abandoned"})


async def write_all(url: str, batches: list[list], kinds: frozenset[str]) -> float:  # type: ignore[type-arg]
    engine = make_async_engine(url, pool_size=1)
    try:
        start = time.perf_counter()
        for rows in batches:
            await write_events(engine, rows, kinds)
        return time.perf_counter() - start
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    events = make_events(args.events, users=max(1000, args.events // 20), items=5000, seed=1)
    now = time.time()
    for k, e in enumerate(events):  # recent: within the triggers' delay, so carts arm
        e["timestamp"] = now - (k % (20 * 86400))
    checked = [check_batch(events[k:k + args.batch], settings, datetime.now(UTC))
               for k in range(0, len(events), args.batch)]
    batches = [c.rows for c in checked]
    seconds: dict[str, list[float]] = {"none": [], "triggers": []}
    with scratch_database(args.postgres) as db, psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO triggers (name, kind, delay_seconds, cooldown_seconds) VALUES "
                     "('cart', 'cart_abandoned', 2592000, 86400), ('browse', 'browse_abandoned', 2592000, 86400)")
        for _ in range(args.rounds):
            for mode, kinds in (("none", frozenset[str]()), ("triggers", KINDS)):
                conn.execute("TRUNCATE events, event_ids, trigger_pending")
                conn.execute("VACUUM ANALYZE events")
                seconds[mode].append(asyncio.run(write_all(db, batches, kinds)))
        pending = conn.execute("SELECT count(*) FROM trigger_pending").fetchone()
    rate = {mode: args.events / statistics.median(s) for mode, s in seconds.items()}
    for mode, s in seconds.items():
        print(f"{mode:9} {', '.join(f'{args.events / x:,.0f}' for x in s)} events/s; median {rate[mode]:,.0f}")
    print(f"overhead  {1 - rate['triggers'] / rate['none']:.1%} of ingest's Postgres write with two triggers "
          f"defined ({args.batch}-event batches, one at a time; {pending[0] if pending else 0:,} rows armed)")


if __name__ == "__main__":
    main()
