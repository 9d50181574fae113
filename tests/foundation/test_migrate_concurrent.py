"""Servers and workers migrate at start: three `shopmind migrate` at once on a fresh database all succeed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from app.migrate import alembic_config
from tests import servers

ROOT = Path(__file__).resolve().parents[2]
RUNS = 3


@pytest.fixture
def fresh_database() -> Iterator[str]:
    admin = servers.postgres_admin_url()
    url, name = servers.create_scratch_database(admin)
    yield url
    servers.drop_database(admin, name)


def _waiting_on_locks(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_concurrent_migrations_all_succeed(fresh_database: str, redis_url: str) -> None:
    # Hold every run at one known point: an uncommitted alembic_version table makes the runs that reach
    # its CREATE wait for this transaction. Released together, unguarded runs would all run the same
    # DDL at once; a guarded one waits for the migration lock instead, behind the first.
    holder = psycopg.connect(fresh_database)
    holder.execute("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY)")
    env = {**os.environ, "SHOPMIND_DATABASE_URL": fresh_database, "SHOPMIND_REDIS_URL": redis_url}
    runs = [
        subprocess.Popen([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(RUNS)
    ]
    try:
        with psycopg.connect(fresh_database, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while _waiting_on_locks(watch) < RUNS and all(r.poll() is None for r in runs):
                assert time.monotonic() < deadline, "the migrations never reached the held point"
                time.sleep(0.05)  # polling for a condition; the hold itself is the lock
        holder.rollback()
        outputs = [r.communicate(timeout=120)[0].decode(errors="replace") for r in runs]
    finally:
        holder.close()
        for r in runs:
            if r.poll() is None:
                r.kill()
    failed = [out[-800:] for r, out in zip(runs, outputs, strict=True) if r.returncode != 0]
    assert failed == [], failed
    head = ScriptDirectory.from_config(alembic_config(fresh_database)).get_current_head()
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        assert conn.execute("SELECT to_regclass('events') IS NOT NULL").fetchone() == (True,)
