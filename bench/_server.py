"""Shared benchmark plumbing: a scratch database, a real server process, timing helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "sm_bench_admin_key_" + uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh database migrated to head on the server of `admin_url`, dropped afterwards."""
    from sqlalchemy.engine import make_url

    from app.migrate import upgrade

    name = f"shopmind_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ, "SHOPMIND_DATABASE_URL": database_url, "SHOPMIND_REDIS_URL": redis_url,
        "SHOPMIND_REDIS_PREFIX": prefix, "SHOPMIND_ADMIN_KEY": ADMIN_KEY, "SHOPMIND_LOG_LEVEL": "WARNING",
        # benchmarks measure serving, not the per-key rate limiter (admin keys default to 200/s)
        "SHOPMIND_RATE_LIMIT_PER_SECOND": '{"ingest": 1000000, "read": 1000000, "admin": 1000000}',
    }


@contextlib.contextmanager
def running_server(env: dict[str, str], workers: int = 2) -> Iterator[str]:
    """`shopmind serve` with `workers` processes, as an operator runs it; yields its base URL."""
    port = free_port()
    cli = shutil.which("shopmind", path=str(Path(sys.executable).parent)) or "shopmind"
    proc = subprocess.Popen(
        [cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--no-demo", "--no-worker"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("server did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Remove a benchmark's Redis keys (every benchmark writes under a prefix of its own)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
