"""Rebuild at scale: synthetic users x items x events COPYed into Postgres, then one worker rebuild.

    python bench/rebuild_scale.py [--users 1000000] [--items 100000] [--events 10000000] [--dask 1 2 4]

Prints per-stage seconds and peak RSS (the worker's `--once` output) plus the load time. With --dask,
one distributed rebuild per worker count instead, each on a fresh local Dask cluster of that many
worker processes (`dask.distributed.LocalCluster`), the driver a `shopmind worker --once --dask`
process of its own: it prints every process's peak RSS, the proof that no one process holds the log. The data has
latent tastes (users and items drawn from topic clusters) and Zipf-like popularity, so every stage
does real work. Item catalog above EASE's limit (20k) uses cosine/RP3beta + the next-item signal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

from bench._server import scratch_database

#: The driver's environment, taken before any LocalCluster starts: starting one writes Dask's worker
#: environment (MALLOC_TRIM_THRESHOLD_=65536, OMP_NUM_THREADS=1, ...) into this process's, and a driver
#: inheriting it took 296 s instead of 158 s to choose its models on the same sample.
DRIVER_ENV = dict(os.environ)


TYPES = np.array(["view"] * 6 + ["click", "add_to_cart", "purchase"])


def generate(n_users: int, n_items: int, n_events: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    topics = 50
    item_topic = rng.integers(0, topics, n_items)
    by_topic = [np.flatnonzero(item_topic == t) for t in range(topics)]
    user_topic = rng.integers(0, topics, n_users)
    activity = rng.pareto(1.5, n_users) + 1
    user = rng.choice(n_users, n_events, p=activity / activity.sum()).astype(np.int64)
    own_topic = rng.random(n_events) < 0.7
    topic = np.where(own_topic, user_topic[user], rng.integers(0, topics, n_events))
    item = np.empty(n_events, dtype=np.int64)
    for t in range(topics):
        rows = np.flatnonzero(topic == t)
        pool = by_topic[t]
        rank = np.minimum(rng.zipf(1.2, len(rows)), len(pool)) - 1
        item[rows] = pool[rank]
    ts = time.time() - rng.uniform(0, 120 * 86400, n_events)
    return {"user": user, "item": item, "type": rng.integers(0, len(TYPES), n_events), "ts": ts,
            "item_topic": item_topic}


def copy_in(database_url: str, data: dict[str, np.ndarray], n_users: int, n_items: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (user_id) FROM STDIN") as copy:
            for u in range(n_users):
                copy.write_row((f"u{u}",))
        with cur.copy("COPY items (item_id, title, categories) FROM STDIN") as copy:
            for i in range(n_items):
                t = int(data["item_topic"][i])
                copy.write_row((f"i{i}", f"topic{t} thing {i % 97}", [f"cat{t}"]))
        # text COPY written in 1M-row blocks: per-row write_row() calls took minutes at 10M events
        with cur.copy("COPY events (event_id, user_id, item_id, type, ts) FROM STDIN") as copy:
            for start in range(0, len(data["user"]), 1_000_000):
                part = slice(start, start + 1_000_000)
                stamps = np.datetime_as_string(data["ts"][part].astype("datetime64[s]"), unit="s")
                rows = zip(range(start, start + len(stamps)), data["user"][part].tolist(),
                           data["item"][part].tolist(), TYPES[data["type"][part]].tolist(), stamps.tolist(),
                           strict=True)  # fmt: skip
                copy.write("".join(f"e{k}\tu{u}\ti{i}\t{t}\t{ts}+00\n" for k, u, i, t, ts in rows))
        cur.execute("VACUUM ANALYZE events")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def distributed(settings: Any, n_workers: int) -> None:
    """One rebuild on a fresh local cluster of `n_workers` processes; the driver in a process of its own."""
    import subprocess

    from distributed import Client, LocalCluster

    env = {**DRIVER_ENV, "SHOPMIND_DATABASE_URL": settings.database_url, "SHOPMIND_REDIS_URL": settings.redis_url,
           "SHOPMIND_REDIS_PREFIX": settings.redis_prefix}  # fmt: skip
    # one thread per worker: on a small box the workers are the parallelism; memory is what is measured.
    # The scheduler's HTTP routes bind 8787 even with no dashboard (None): a free port avoids collisions.
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit=None) as cluster, Client(cluster) as client:  # fmt: skip
        print(f"-- on Dask, {n_workers} worker process{'es' if n_workers > 1 else ''}:", flush=True)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "app.cli", "worker", "--once", "--dask", cluster.scheduler_address],
                              env=env, capture_output=True, text=True)  # fmt: skip
        took = time.perf_counter() - t
        print(done.stdout.rstrip())
        if done.returncode:
            print(done.stderr[-3000:])
            raise SystemExit(f"the distributed rebuild failed ({done.returncode})")
        workers = client.run(_peak_rss_mb)
        driver = max((float(line.split("peak RSS")[1].split("MB")[0]) for line in done.stdout.splitlines()
                      if "peak RSS" in line), default=0.0)  # fmt: skip
        per_worker = " ".join(f"{mb:,.0f}" for mb in sorted(workers.values()))
        print(f"total {took:.1f} s; peak RSS: driver {driver:,.0f} MB, workers {per_worker} MB "
              f"(max {max(workers.values()):,.0f} MB)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("SHOPMIND_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--dask", type=int, nargs="+", metavar="N", help="distributed rebuilds on N local workers")
    args = ap.parse_args()
    from app.settings import Settings
    from app.worker.pipeline import rebuild

    t = time.perf_counter()
    data = generate(args.users, args.items, args.events)
    print(f"generated {args.events:,} events in {time.perf_counter() - t:.1f} s")
    prefix = f"benchscale:{uuid.uuid4().hex[:8]}:"
    with scratch_database(args.postgres) as db:
        t = time.perf_counter()
        copy_in(db, data, args.users, args.items)
        print(f"COPYed into Postgres in {time.perf_counter() - t:.1f} s")
        del data
        settings = Settings(database_url=db, redis_url=args.redis, redis_prefix=prefix,
                            _env_file=None)  # type: ignore[call-arg]
        print(f"rebuild of {args.users:,} users x {args.items:,} items x {args.events:,} events:")
        if args.dask:
            for n in args.dask:
                distributed(settings, n)
        else:
            t = time.perf_counter()
            result = rebuild(settings, trigger="bench", progress=True)
            print(f"total {time.perf_counter() - t:.1f} s, peak RSS {result.stages.get('peak_rss_mb', 0):,.0f} MB "
                  f"(targets at 1M x 100k x 10M: <= 600 s, <= 8192 MB)")
        import redis

        client = redis.Redis.from_url(args.redis)
        pipe = client.pipeline(transaction=False)
        for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            pipe.unlink(key)
            if len(pipe) >= 10_000:
                pipe.execute()
        pipe.execute()


if __name__ == "__main__":
    main()
