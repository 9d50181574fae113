"""Soak test: mixed traffic at a fixed rate for minutes, watching errors, latency and server memory.

    python bench/soak.py [--rate 200] [--duration 180] [--url http://host:8000 --key sm_...]

Without --url it starts its own server: a scratch database on the Postgres of --postgres (dropped
afterwards), a fresh Redis prefix, `shopmind serve --workers 2 --no-demo --no-worker`, an ingest+read
API key from `shopmind keys create`, a seeded catalog and event history, and one `shopmind worker
--once` rebuild so recommendations come from a real model.

Traffic is open-loop: request k is due at start + k/rate whatever happened before (bounded by
--max-in-flight; a request that cannot start because the bound is reached counts as an error, so an
overloaded server shows up as errors instead of a silently lower rate). 80% reads — GET
/v1/users/{id}/recommendations when the spec has it, else GET /v1/items/{id} — and 20% ingest
batches of 50 events. Every 15 s: requests, errors, p50/p99 latency of the window, RSS of the server
processes (psutil). At the end: the zero-error verdict and RSS growth. Exit status 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._server import free_port, percentile, scratch_database

ROOT = Path(__file__).resolve().parent.parent
N_USERS, N_ITEMS = 2000, 1000
EVENT_TYPES = ("view", "view", "view", "click", "add_to_cart", "purchase")


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0


@dataclass
class Totals:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    rss_mb: list[float] = field(default_factory=list)


# --- the server under test --------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"shopmind {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def own_server(postgres: str, redis_url: str, workers: int) -> Iterator[tuple[str, str, dict[str, str], int]]:
    """(base URL, API key, env, pid of `shopmind serve`) of a fresh server on a scratch database."""
    prefix = f"smsoak:{uuid.uuid4().hex[:8]}:"
    with scratch_database(postgres) as database_url:
        env = {
            **os.environ,
            "SHOPMIND_DATABASE_URL": database_url,
            "SHOPMIND_REDIS_URL": redis_url,
            "SHOPMIND_REDIS_PREFIX": prefix,
            "SHOPMIND_LOG_LEVEL": "WARNING",
        }
        env.pop("SHOPMIND_ADMIN_KEY", None)
        key = _cli(env, "keys", "create", "--scope", "ingest", "--scope", "read", "--name", "soak").split()[
            -1
        ]
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-demo",
                "--no-worker",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("`shopmind serve` did not start")
                time.sleep(0.3)
            yield base, key, env, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            _drop_prefix(redis_url, prefix)


def _drop_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(batch), 1000):
        client.delete(*batch[start : start + 1000])
    client.close()


def seed(base: str, key: str) -> None:
    rng = random.Random(1)
    now = time.time()
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120) as http:
        items = [
            {"item_id": f"sku-{i}", "title": f"item {i}", "categories": [f"c{i % 20}"], "price": 1.0 + i % 90}
            for i in range(N_ITEMS)
        ]
        http.post("/v1/items", json={"items": items}).raise_for_status()
        for batch in range(30):
            events = [
                {
                    "user_id": f"u{rng.randrange(N_USERS)}",
                    "item_id": f"sku-{int(rng.paretovariate(1.2)) % N_ITEMS}",
                    "type": rng.choice(EVENT_TYPES),
                    "timestamp": now - rng.uniform(0, 20 * 86400),
                }
                for _ in range(1000)
            ]
            http.post("/v1/events", json={"events": events}).raise_for_status()
            print(f"\rseeding events {batch + 1}/30", end="", flush=True)
    print()


def server_rss_mb(pid: int | None) -> float:
    """Resident memory of the server process tree (the supervisor and its uvicorn workers)."""
    if pid is None:
        return float("nan")
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


# --- traffic ----------------------------------------------------------------------------------------


async def one_request(http: httpx.AsyncClient, read_path: str, current: list[Window]) -> None:
    """One read or ingest call, recorded in the window current when it completes."""
    rng = random.random
    started = time.perf_counter()
    label = "read"
    try:
        if rng() < 0.8:
            user = f"u{int(rng() * N_USERS)}"
            item = f"sku-{int(rng() * N_ITEMS)}"
            r = await http.get(read_path.format(user_id=user, item_id=item))
            ok = r.status_code == 200
        else:
            label = "ingest"
            now = time.time()
            events = [
                {
                    "user_id": f"u{int(rng() * N_USERS)}",
                    "item_id": f"sku-{int(rng() * N_ITEMS)}",
                    "type": random.choice(EVENT_TYPES),
                    "timestamp": now,
                }
                for _ in range(50)
            ]
            r = await http.post("/v1/events", json={"events": events})
            ok = r.status_code == 200 and r.json().get("accepted") == 50
        if not ok:
            current[0].errors[f"{label} {r.status_code}"] += 1
    except httpx.HTTPError as exc:
        current[0].errors[f"{label} {type(exc).__name__}"] += 1
    current[0].latencies.append((time.perf_counter() - started) * 1000)
    current[0].requests += 1


async def traffic(
    base: str,
    key: str,
    rate: float,
    duration: float,
    every: float,
    max_in_flight: int,
    server_pid: int | None,
) -> Totals:
    async with httpx.AsyncClient(
        base_url=base,
        headers={"X-API-Key": key},
        timeout=30,
        limits=httpx.Limits(max_connections=max_in_flight),
    ) as http:
        spec = (await http.get("/openapi.json")).json()
        read_path = (
            "/v1/users/{user_id}/recommendations"
            if "/v1/users/{user_id}/recommendations" in spec["paths"]
            else "/v1/items/{item_id}"
        )
        print(f"reads: GET {read_path}; ingest: POST /v1/events x50; {rate:g} req/s for {duration:g} s")
        print(f"{'t(s)':>5} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'rss MB':>8}")
        totals = Totals()
        current = [Window()]
        in_flight: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        next_report = start + every
        k = 0
        while True:
            due = start + k / rate
            now = time.perf_counter()
            if due - start >= duration:
                break
            if due > now:
                await asyncio.sleep(due - now)
            if len(in_flight) >= max_in_flight:
                current[0].errors["shed (in-flight bound reached)"] += 1
                current[0].requests += 1
            else:
                task = asyncio.create_task(one_request(http, read_path, current))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            k += 1
            if time.perf_counter() >= next_report:
                _report(current[0], totals, time.perf_counter() - start, server_rss_mb(server_pid))
                current[0] = Window()
                next_report += every
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)
        if current[0].requests:
            _report(current[0], totals, time.perf_counter() - start, server_rss_mb(server_pid))
        return totals


def _report(window: Window, totals: Totals, t: float, rss: float) -> None:
    totals.requests += window.requests
    totals.latencies.extend(window.latencies)
    totals.errors.update(window.errors)
    totals.rss_mb.append(rss)
    errors = sum(window.errors.values())
    print(
        f"{t:5.0f} {window.requests:9d} {errors:7d} {percentile(window.latencies, 50):8.1f} "
        f"{percentile(window.latencies, 99):8.1f} {rss:8.1f}",
        flush=True,
    )
    for what, n in window.errors.most_common(3):
        print(f"      {n} x {what}")


def verdict(totals: Totals, duration: float) -> bool:
    errors = sum(totals.errors.values())
    print("\n--- soak summary ---")
    print(
        f"requests {totals.requests} in {duration:g} s ({totals.requests / duration:.1f}/s), errors {errors}"
    )
    print(
        f"latency p50 {percentile(totals.latencies, 50):.1f} ms, "
        f"p99 {percentile(totals.latencies, 99):.1f} ms, "
        f"max {max(totals.latencies, default=float('nan')):.1f} ms"
    )
    rss = [r for r in totals.rss_mb if r == r]
    if len(rss) >= 2:
        first, last = rss[0], rss[-1]  # the first sample is taken after one reporting window of warm-up
        trend = statistics.linear_regression(range(len(rss)), rss).slope if len(rss) >= 3 else last - first
        print(
            f"server RSS {first:.1f} -> {last:.1f} MB (growth {last - first:+.1f} MB, "
            f"{100 * (last - first) / first:+.1f}%; slope {trend:+.2f} MB per window)"
        )
    ok = errors == 0
    print(
        "VERDICT:",
        "PASS — zero errors" if ok else f"FAIL — {errors} errors: {dict(totals.errors.most_common(5))}",
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of traffic (default 180)")
    parser.add_argument("--every", type=float, default=15.0, help="report interval in seconds (default 15)")
    parser.add_argument("--max-in-flight", type=int, default=200, help="concurrent requests at most")
    parser.add_argument("--url", help="an already running server (then --key is required)")
    parser.add_argument("--key", help="API key with ingest and read scopes, for --url")
    parser.add_argument("--pid", type=int, help="server process to measure RSS of, for --url")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SHOPMIND_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the Postgres to create the scratch database on",
    )
    parser.add_argument("--redis", default=os.environ.get("SHOPMIND_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the started server")
    args = parser.parse_args()

    def run(base: str, key: str, pid: int | None) -> bool:
        totals = asyncio.run(
            traffic(base, key, args.rate, args.duration, args.every, args.max_in_flight, pid)
        )
        return verdict(totals, args.duration)

    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        return 0 if run(args.url.rstrip("/"), args.key, args.pid) else 1
    with own_server(args.postgres, args.redis, args.workers) as (base, key, env, pid):
        print(f"server {base} (pid {pid}, {args.workers} workers); seeding {N_ITEMS} items, 30,000 events")
        seed(base, key)
        print("rebuilding the model (shopmind worker --once)")
        _cli(env, "worker", "--once")
        ok = run(base, key, pid)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
