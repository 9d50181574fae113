"""The exposure log: serving appends to a Redis list inside the round trip it already makes; a flush
(the worker every few seconds, and a results read first) COPYs a batch into Postgres and only then
trims it from the list, so nothing acknowledged is lost. A crash between the commit and the trim
copies that batch twice; results count exposures by their distinct token, so that costs nothing.
Only one flusher runs at a time (an advisory lock), so two never copy the same entries at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.batch import Command
from app.store.keys import Keys

BATCH = 5000
LOCK = 0x65787073  # "exps": pg_try_advisory_xact_lock key of the flusher
COPY = "COPY experiment_exposures (experiment_id, variant, user_id, recommendation_id, exposed_at) FROM STDIN"
Row = tuple[int, str, str, str, datetime]


def entry(experiment_id: int, variant: str, token: str, user_id: str, ts: float) -> str:
    # the user id last: it is the one part that may itself contain "|"
    return f"{experiment_id}|{variant}|{token}|{ts!r}|{user_id}"


def push(keys: Keys, line: str) -> Command:
    return ("RPUSH", keys.experiment_exposures(), line)


def parse(raw: list[Any]) -> list[Row]:
    rows = []
    for value in raw:
        line = value.decode() if isinstance(value, bytes) else value
        experiment_id, variant, token, ts, user_id = line.split("|", 4)
        rows.append((int(experiment_id), variant, user_id, token, datetime.fromtimestamp(float(ts), UTC)))
    return rows


async def flush(session: AsyncSession, client: aioredis.Redis, keys: Keys) -> int:
    """Copy what is waiting (up to BATCH entries a pass), commit, trim. Returns how many were copied."""
    total = 0
    while True:
        if not (await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK})).scalar_one():
            await session.rollback()
            return total  # another flusher is at it
        raw: list[Any] = await client.lrange(keys.experiment_exposures(), 0, BATCH - 1)
        if raw:
            conn = await session.connection()
            driver: Any = (await conn.get_raw_connection()).driver_connection
            async with driver.cursor() as cur, cur.copy(COPY) as copy:
                for row in parse(raw):
                    await copy.write_row(row)
        await session.commit()
        if not raw:
            return total
        await client.ltrim(keys.experiment_exposures(), len(raw), -1)
        total += len(raw)
        if len(raw) < BATCH:
            return total


def flush_sync(conn: psycopg.Connection[Any], client: redis.Redis, keys: Keys) -> int:
    """`flush` for the worker's synchronous loop."""
    total = 0
    while True:
        with conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK,)).fetchone()[0]:  # type: ignore[index]
                return total
            raw: list[Any] = client.lrange(keys.experiment_exposures(), 0, BATCH - 1)
            if raw:
                with conn.cursor() as cur, cur.copy(COPY) as copy:
                    for row in parse(raw):
                        copy.write_row(row)
        if not raw:
            return total
        client.ltrim(keys.experiment_exposures(), len(raw), -1)
        total += len(raw)
        if len(raw) < BATCH:
            return total
