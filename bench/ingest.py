"""Ingest benchmark: batch events/s through POST /v1/events against a raw COPY of the same rows.

    python bench/ingest.py [--events 200000] [--batch 1000] [--concurrency 8] [--workers 2] [--rounds 3]
                           [--triggers]

Starts a real server (`shopmind serve --workers 2`) on a scratch database of the local (or configured)
Postgres and Redis, loads the events over HTTP, then COPYs the same rows into the same (emptied) table,
--rounds times back to back, and prints each round and the medians: this box's speed drifts by a third
within minutes, the ratio of two neighbouring measurements much less. Also measures single-event posts:
requests/s and p50/p99 latency, and prints the CPU time the server, Postgres and Redis spent per 1,000
batch-ingested events.

Sustained throughput is measured at saturation: 8 calls in flight keep both cores busy, while with 4
a call's trips between the server, Postgres and Redis leave about a seventh of the CPU idle (4 gave a
ratio 0.03–0.05 lower in the same session).

--triggers defines a cart_abandoned and a browse_abandoned trigger (30-day delays) first, so ingest runs
their set-based arming and cancelling statements in every batch and a third of the carts (those of
the last 30 days) are armed: the cost of triggers, against a run without them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import orjson
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._server import ADMIN_KEY, delete_prefix, percentile, running_server, scratch_database, server_env

TYPES = ("view", "view", "view", "click", "add_to_cart", "purchase")


def make_events(n: int, users: int, items: int, seed: int) -> list[dict[str, object]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    now = time.time()
    u = rng.integers(0, users, n)
    i = np.minimum(rng.zipf(1.3, n), items) - 1
    t = rng.integers(0, len(TYPES), n)
    ts = now - rng.uniform(0, 90 * 86400, n)
    run = uuid.uuid4().hex[:6]
    return [
        {"event_id": f"b{run}-{k}", "user_id": f"user-{u[k]}", "item_id": f"item-{i[k]}", "type": TYPES[t[k]],
         "timestamp": round(float(ts[k]), 3), "session_id": f"s-{u[k]}-{k // 20}"}
        for k in range(n)
    ]


def _request(host: str, body: bytes, keep_alive: bool) -> bytes:
    """A POST /v1/events written out by hand. The load client shares this box's two cores with the
    server, and an HTTP library would spend a fifth of the CPU the server does on a call."""
    return (b"POST /v1/events HTTP/1.1\r\nHost: " + host.encode() + b"\r\nAuthorization: Bearer "
            + ADMIN_KEY.encode() + b"\r\nContent-Type: application/json\r\n"
            + (b"" if keep_alive else b"Connection: close\r\n")
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request and read its answer; the `accepted` count of it."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    answer = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"POST /v1/events answered {status}: {answer[:300]!r}")
    return int(orjson.loads(answer)["accepted"])


async def post_batches(base: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """Post every body, `concurrency` calls at a time; (seconds, events accepted).

    The requests are written out in full before the clock starts. A connection per call, as many shops'
    servers would open (and so the calls spread over the server's processes rather than sticking to
    the ones that accepted a kept-alive connection).
    """
    host, port = base.removeprefix("http://").rsplit(":", 1)
    requests = [_request(host, body, keep_alive=False) for body in bodies]
    pending = iter(requests)
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        for request in pending:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                n = await _exchange(reader, writer, request)  # not `accepted += await …`: it reads first
            finally:
                writer.close()
            accepted += n

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, accepted


async def single_posts(base: str, events: list[dict[str, object]], seconds: float, concurrency: int
                       ) -> tuple[int, list[float]]:
    """One event a call for `seconds`, `concurrency` kept-alive connections: (calls/s, latencies in ms)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    requests = iter([
        _request(host, orjson.dumps({"events": [{**e, "event_id": f"single-{e['event_id']}"}]}), keep_alive=True)
        for e in events
    ])

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for request in requests:
                if time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                await _exchange(reader, writer, request)
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return int(len(latencies) / (time.perf_counter() - start)), latencies


class CpuMeter:
    """CPU seconds spent by the server's processes, Postgres and Redis between two readings.

    Per 1,000 events these figures hardly move with the machine's load, unlike events/s. Processes
    that start in between (a new Postgres backend) count in full.
    """

    def __init__(self, base: str) -> None:
        port = base.rsplit(":", 1)[1]
        self.server = [p for p in psutil.process_iter(["cmdline"]) if port in " ".join(p.info["cmdline"] or [])]
        self.start = self._read()
        self.paused: dict[str, float] = {}
        self._paused_at: dict[str, dict[int, float]] = {}

    def _groups(self) -> dict[str, list[psutil.Process]]:
        by_name: dict[str, list[psutil.Process]] = {"postgres": [], "redis": []}
        for p in psutil.process_iter(["name"]):
            for name, procs in by_name.items():
                if name in (p.info["name"] or ""):
                    procs.append(p)
        return {"server": self.server + [c for p in self.server for c in p.children(recursive=True)], **by_name}

    def _read(self) -> dict[str, dict[int, float]]:
        seconds: dict[str, dict[int, float]] = {}
        for name, procs in self._groups().items():
            seconds[name] = {}
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    seconds[name][p.pid] = t.user + t.system
        return seconds

    def spent(self) -> dict[str, float]:
        end = self._read()
        return {name: sum(s - self.start[name].get(pid, 0.0) for pid, s in pids.items())
                - self.paused.get(name, 0.0) for name, pids in end.items()}

    def pause(self) -> None:
        """Stop counting (until `resume`): what runs in between is not the server's work."""
        self._paused_at = self._read()

    def resume(self) -> None:
        now = self._read()
        for name, pids in now.items():
            self.paused[name] = self.paused.get(name, 0.0) + sum(
                s - self._paused_at[name].get(pid, 0.0) for pid, s in pids.items())  # new ones: all paused


def _fresh_table(database_url: str) -> None:
    """An empty events table with a partition for each month of the events (as the worker would have
    made them), and no checkpoint pending from what the previous run wrote."""
    from datetime import UTC, datetime

    from app.events import partitions

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE events, event_ids, trigger_pending")
        this_month = partitions.month_start(datetime.now(UTC))
        have = partitions.monthly_partitions(conn)
        for k in range(-4, 1):  # make_events: the last 90 days
            if partitions.add_months(this_month, k) not in have:
                partitions.create_partition(conn, partitions.add_months(this_month, k))
        conn.execute("VACUUM ANALYZE events")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def raw_copy(database_url: str, events: list[dict[str, object]]) -> float:
    """COPY the same rows into the same table (indexes, constraints) after emptying it.

    The COPY text is formatted before the clock starts, so the baseline is the server's raw speed.
    """
    payload = "".join(
        f"{e['event_id']}\t{e['user_id']}\t{e['item_id']}\t{e['type']}\t"
        f"{time.strftime('%Y-%m-%d %H:%M:%S+00', time.gmtime(float(e['timestamp'])))}\t{e['session_id']}\n"  # type: ignore[arg-type]
        for e in events
    ).encode()
    _fresh_table(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "COPY events (event_id, user_id, item_id, type, ts, session_id) FROM STDIN"
        ) as copy:
            for k in range(0, len(payload), 1 << 20):
                copy.write(payload[k:k + (1 << 20)])
        return time.perf_counter() - start


def define_triggers(base: str) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    month = 30 * 86400
    for name, kind in (("bench-cart", "cart_abandoned"), ("bench-browse", "browse_abandoned")):
        r = httpx.put(f"{base}/v1/triggers/{name}", json={"kind": kind, "delay_seconds": month}, headers=headers)
        r.raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="HTTP ingest and raw COPY measured back to back this many times; medians printed")
    ap.add_argument("--single-seconds", type=float, default=10.0)
    ap.add_argument("--triggers", action="store_true", help="define cart and browse abandonment triggers first")
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("SHOPMIND_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()

    events = make_events(args.events, users=max(1000, args.events // 20), items=5000, seed=1)
    bodies = [orjson.dumps({"events": events[k:k + args.batch]}) for k in range(0, len(events), args.batch)]
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    rounds: list[tuple[float, float]] = []  # (HTTP events/s, raw COPY rows/s), measured back to back
    with scratch_database(args.postgres) as db:
        with running_server(server_env(db, args.redis, prefix), workers=args.workers) as base:
            if args.triggers:
                define_triggers(base)
            asyncio.run(post_batches(base, bodies[:5], args.concurrency))  # warm up connections and caches
            meter, accepted, load_before = CpuMeter(base), 0, os.getloadavg()[0]
            for _ in range(args.rounds):
                _fresh_table(db)
                seconds, n = asyncio.run(post_batches(base, bodies, args.concurrency))
                meter.pause()
                accepted += n
                rounds.append((n / seconds, len(events) / raw_copy(db, events)))
                meter.resume()
            cpu = meter.spent()
            load_after = os.getloadavg()[0]
            single_rate, latencies = asyncio.run(
                single_posts(base, make_events(50_000, 1000, 5000, seed=2), args.single_seconds, 8))
        delete_prefix(args.redis, prefix)
    for k, (http_rate, copy_rate) in enumerate(rounds, 1):
        print(f"round {k}        HTTP {http_rate:,.0f} events/s, raw COPY {copy_rate:,.0f} rows/s, "
              f"ratio {http_rate / copy_rate:.2f}")
    http_rate, copy_rate = (statistics.median(r[i] for r in rounds) for i in (0, 1))
    ratio = statistics.median(h / c for h, c in rounds)
    print(f"batch ingest   {len(events):,} events a round: median {http_rate:,.0f} events/s "
          f"({args.batch}/call, {args.concurrency} concurrent, {args.workers} server workers"
          f"{', cart and browse triggers defined' if args.triggers else ''})")
    print(f"raw COPY       the same rows into the same emptied table: median {copy_rate:,.0f} rows/s")
    print(f"ratio          HTTP ingest / raw COPY = {ratio:.2f} (median of {len(rounds)} rounds)")
    print("cpu per 1,000   " + ", ".join(f"{name} {s / accepted * 1e6:.1f} ms" for name, s in cpu.items())
          + f" (raw COPY: {1e6 / copy_rate:.1f} ms wall)")
    print(f"load average   {load_before:.2f} before the batch runs, {load_after:.2f} after "
          f"({os.cpu_count()} CPUs; events/s vary with the machine's load, the ratio much less)")
    print(f"single events  {single_rate:,} requests/s, p50 {percentile(latencies, 50):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms (8 concurrent)")


if __name__ == "__main__":
    main()
