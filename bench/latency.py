"""Serving latency: GET /v1/users/{id}/recommendations under load, against a trivial endpoint.

    python bench/latency.py [--users 2000] [--items 2000] [--rate 500] [--seconds 20] [--runs 3]

Builds a shop whose benchmark users each have 50 history items, rebuilds, starts `shopmind serve
--workers 2`, then (1) offers --rate requests/s, --runs times, and reports the latency percentiles and
how the connections split between the workers, (2) finds peak throughput for the recommendation route
and for GET /healthz of the same app, and (3) prints the CPU time per request of each, by process
(which hardly moves with the box's load, unlike requests/s). All phases use `wrk` walking 1,000
benchmark users in turn (apt-get install wrk).

The offered load is 50 connections, each pausing a random (exponential) think time between its
requests, so arrivals are spread like independent shoppers'. `hey -q` was used before: its workers
tick in step, so its "500 requests/s" arrived as bursts of 50 every 100 ms and measured the queue of
a burst (p50 19 ms for a cold user whose request takes 1.4 ms alone).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._server import ADMIN_KEY, delete_prefix, running_server, scratch_database, server_env
from bench.ingest import CpuMeter


def load_shop(database_url: str, redis_url: str, prefix: str, n_users: int, n_items: int) -> list[str]:
    """Catalog + users with exactly 50 distinct history items each, through the real ingest path."""
    import asyncio

    from app.catalog import service as catalog_service
    from app.catalog.schemas import ItemWithId
    from app.db import make_async_engine
    from app.demo.generator import generate_shop
    from app.events import service as events_service
    from app.settings import Settings
    from app.store.client import make_async_redis
    from app.store.keys import Keys

    settings = Settings(database_url=database_url, redis_url=redis_url, redis_prefix=prefix)
    shop = generate_shop(n_users=n_users, n_items=n_items, seed=5, now=time.time())
    rng = np.random.default_rng(0)
    now = time.time()
    extra = []
    users = [u["user_id"] for u in shop.users]
    for user in users:
        for k, item in enumerate(rng.choice(n_items, 50, replace=False)):
            extra.append({"user_id": user, "item_id": shop.items[item]["item_id"],
                          "type": "view" if k % 5 else "add_to_cart", "timestamp": now - 3600 * (50 - k)})

    async def run() -> None:
        engine = make_async_engine(database_url, pool_size=2)
        redis = make_async_redis(redis_url)
        keys = Keys(prefix)
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

        async with async_sessionmaker(engine, class_=AsyncSession)() as session, session.begin():
            await catalog_service.upsert_items(session, [ItemWithId.model_validate(i) for i in shop.items])
        await catalog_service.publish_items(redis, keys, [ItemWithId.model_validate(i) for i in shop.items])
        events = [{k: v for k, v in e.items() if v is not None} for e in shop.events] + extra
        for start in range(0, len(events), 5000):
            await events_service.ingest(engine, redis, keys, settings, events[start:start + 5000])
        await redis.aclose()
        await engine.dispose()

    asyncio.run(run())
    from app.worker.pipeline import rebuild

    rebuild(settings, trigger="bench")
    return users


def offered(base: str, script: str, rate: int, seconds: float) -> tuple[float, dict[str, float], int, list[int]]:
    """Requests/s achieved, latency percentiles (ms), requests made and connections per server worker
    with `rate` requests/s offered."""
    wrk_run = subprocess.Popen(
        ["wrk", "-t", "2", "-c", str(OFFER_CONNECTIONS), "-d", f"{int(seconds)}s", "--latency", "-s", script,
         "-H", f"Authorization: Bearer {ADMIN_KEY}", base + "/"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "THINK_MS": f"{think_ms(rate):.3f}"},
    )
    time.sleep(min(2.0, seconds / 2))
    split = connections_per_worker(base)
    out, _ = wrk_run.communicate()
    if wrk_run.returncode:
        raise SystemExit(f"wrk failed:\n{out}")
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    percentiles = {m.group(1): float(m.group(2)) * unit[m.group(3)]
                   for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, percentiles, made(out), split


def connections_per_worker(base: str) -> list[int]:
    """Established client connections held by each uvicorn worker process, largest first.

    The workers race to accept, and whichever wakes first takes every connection waiting then: wrk's 50
    connections, opened at once, can land 33/17, which loads one worker twice as much as the other.
    """
    port = int(base.rsplit(":", 1)[1])
    counts = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "multiprocessing" not in cmdline and "spawn_main" not in cmdline:
            continue
        with contextlib.suppress(psutil.Error):
            held = [c for c in proc.net_connections(kind="tcp")
                    if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED]
            if held:
                counts.append(len(held))
    return sorted(counts, reverse=True)


def made(wrk_output: str) -> int:
    return int(re.search(r"(\d+) requests in", wrk_output).group(1))  # type: ignore[union-attr]


OFFER_CONNECTIONS = 50
EXPECTED_SERVICE_MS = 5.0  # the mean response time seen at 500 req/s: think time makes up the rest


def think_ms(rate: int) -> float:
    """Mean pause per connection so that 50 connections offer `rate` requests/s in all."""
    return max(0.0, 1000.0 * OFFER_CONNECTIONS / rate - EXPECTED_SERVICE_MS)


# --placement: one placement with every rule set (issue 14's latency bar)
BENCH_PLACEMENT = {
    "kind": "user", "n": 10,
    "filters": {"exclude_items": ["item-0003", "item-0004"], "attributes": {"color": ["red", "green", "blue"]}},
    "boosts": [{"where": {"category": "shoes"}, "factor": 1.5}, {"where": {"max_price": 30}, "factor": 0.8}],
    "pins": [{"item_id": "item-0001", "position": 1}, {"item_id": "item-0002", "position": 4}],
    "diversity": {"max_per_category": 3, "lambda": 0.7},
    "rotation": {"window_minutes": 30, "strength": 0.5},
}


def walk_script(users: list[str], query: str = "n=10") -> str:
    """wrk Lua: each request for the next benchmark user; an exponential pause first when THINK_MS is set."""
    return (
        "local ids = {" + ",".join(f'"{u}"' for u in users) + "}\nlocal k = 0\n"
        "local think = tonumber(os.getenv('THINK_MS') or '0')\n"
        "request = function()\n  k = k % #ids + 1\n"
        f"  return wrk.format('GET', '/v1/users/' .. ids[k] .. '/recommendations?{query}')\nend\n"
        "if think > 0 then\n  delay = function() return -math.log(1 - math.random()) * think end\nend\n"
    )


def wrk(url: str, seconds: float, script: str | None = None) -> tuple[float, int]:
    cmd = ["wrk", "-t", "2", "-c", "32", "-d", f"{int(seconds)}s", "-H", f"Authorization: Bearer {ADMIN_KEY}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), made(out)  # type: ignore[union-attr]


def load() -> str:
    """The box is shared: figures mean little without how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="offered-rate runs, each with fresh connections")
    ap.add_argument("--placement", action="store_true",
                    help="walk ?placement=bench, a placement with every rule set (pins, boosts, filters, "
                    "diversity with MMR, rotation)")
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("SHOPMIND_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    with scratch_database(args.postgres) as db:
        t = time.perf_counter()
        users = load_shop(db, args.redis, prefix, args.users, args.items)
        print(f"loaded and rebuilt {args.users} users x {args.items} items in {time.perf_counter() - t:.0f} s")
        with psycopg.connect(db) as conn:
            events = conn.execute("SELECT count(*) FROM events").fetchone()
        print(f"events: {events[0] if events else 0:,}")
        with running_server(server_env(db, args.redis, prefix), workers=2) as base, \
                tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            # users walked in turn, so no single user's keys stay hot in a cache
            query = "n=10"
            if args.placement:
                import httpx

                put = httpx.put(f"{base}/v1/placements/bench", json=BENCH_PLACEMENT,
                                headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                put.raise_for_status()
                query = "placement=bench"
            lua.write(walk_script(users[:1000], query))
            lua.flush()
            offered(base, lua.name, args.rate, 3)  # warm up: model arrays and rows cached in both workers
            for _ in range(args.runs):  # each run opens its connections afresh: the split varies
                rps, p, _, split = offered(base, lua.name, args.rate, args.seconds)
                print(f"offered rate   {args.rate} req/s offered, {rps:.0f} req/s served: p50 {p.get('50', 0):.1f} ms, "
                      f"p90 {p.get('90', 0):.1f} ms, p99 {p.get('99', 0):.1f} ms (target p99 <= 20 ms); "
                      f"connections per worker {'/'.join(map(str, split))}; {load()}")
            meter = CpuMeter(base)
            peak, peak_made = wrk(base + "/", args.seconds, lua.name)
            peak_cpu = meter.spent()
            meter = CpuMeter(base)
            trivial, trivial_made = wrk(base + "/healthz", args.seconds)
            trivial_cpu = meter.spent()
            print(f"peak           recommendations {peak:,.0f} req/s, /healthz {trivial:,.0f} req/s, "
                  f"ratio {peak / trivial:.2f}; {load()}")
            per_rec = {name: s / peak_made * 1e3 for name, s in peak_cpu.items()}
            per_trivial = {name: s / trivial_made * 1e3 for name, s in trivial_cpu.items()}
            # CPU per request hardly moves with the box's load, unlike requests/s
            print("cpu per request recommendations " + ", ".join(f"{k} {v:.3f} ms" for k, v in per_rec.items())
                  + "; /healthz " + ", ".join(f"{k} {v:.3f} ms" for k, v in per_trivial.items()))
        delete_prefix(args.redis, prefix)


if __name__ == "__main__":
    main()
