"""Gauges read at scrape time from Postgres and Redis: the serving model, the last rebuild, table sizes.

These describe shared state (every API process would report the same), so they are read, not counted:
one small set of queries per scrape, cached for `ttl` seconds so a scrape storm costs nothing.

Table sizes (`shopmind_table_rows`) are exact `count(*)` below 100,000 rows and the planner's estimate
(`pg_class.reltuples`, refreshed by autovacuum/ANALYZE) above, so a scrape never scans a large table.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.keys import Keys

log = logging.getLogger(__name__)

TABLES = ("users", "items", "events")
EXACT_COUNT_BELOW = 100_000
MAX_MODEL_METRICS = 200  # bound on the series one model_runs row can add

_LAST_SUCCESS = text(
    "SELECT version, extract(epoch FROM finished_at)::float8, duration_seconds, stages, metrics "
    "FROM model_runs WHERE status = 'succeeded' ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1"
)
_LAST_FINISHED = text(
    "SELECT status FROM model_runs WHERE status IN ('succeeded', 'failed') ORDER BY id DESC LIMIT 1"
)
_RUNS_BY_STATUS = text("SELECT status, count(*) FROM model_runs GROUP BY status")
# A partitioned table (events) has no reltuples of its own that autovacuum keeps up: sum its analyzed
# partitions' (-1, so an exact count, while none is).
_ESTIMATES = text(
    "SELECT c.relname, (CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(p.reltuples), -1) FROM pg_inherits i"
    " JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = c.oid AND p.reltuples >= 0)"
    " ELSE c.reltuples END)::bigint FROM pg_class c WHERE c.oid IN ("
    + ", ".join(f"to_regclass('{t}')" for t in TABLES) + ")"
)


def flatten_numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Finite numeric leaves of a JSON value, keyed by their dotted path (`recommend.ndcg@10`)."""
    out: dict[str, float] = {}
    if isinstance(value, bool):
        return out
    if isinstance(value, int | float):
        if prefix and math.isfinite(value):
            out[prefix] = float(value)
        return out
    if isinstance(value, dict):
        for key, child in value.items():
            out.update(flatten_numbers(child, f"{prefix}.{key}" if prefix else str(key)))
    return out


@dataclass(frozen=True)
class LastRebuild:
    version: str | None
    finished_at: float | None
    duration_seconds: float | None
    stages: dict[str, float]
    metrics: dict[str, float]


@dataclass(frozen=True)
class Snapshot:
    """What one scrape reports about shared state; `collect()` makes it a prometheus_client collector."""

    postgres_up: bool = False
    redis_up: bool = False
    model_version: str | None = None
    table_rows: dict[str, int] = field(default_factory=dict)
    runs_by_status: dict[str, int] = field(default_factory=dict)
    last_success: LastRebuild | None = None
    last_finished_failed: bool | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("shopmind_dependency_up", "1 when the dependency answered this scrape.",
                               labels=["dependency"])
        up.add_metric(["postgres"], float(self.postgres_up))
        up.add_metric(["redis"], float(self.redis_up))
        yield up
        if self.model_version is not None:
            info = GaugeMetricFamily("shopmind_model_info", "The model version being served (value 1).",
                                     labels=["version"])
            info.add_metric([self.model_version], 1.0)
            yield info
        rows = GaugeMetricFamily(
            "shopmind_table_rows", "Rows per table: exact below 100k, else the planner's estimate.",
            labels=["table"],
        )
        for table, n in self.table_rows.items():
            rows.add_metric([table], float(n))
        yield rows
        runs = GaugeMetricFamily("shopmind_rebuild_runs", "Rebuild attempts recorded, by status.",
                                 labels=["status"])
        for status, n in self.runs_by_status.items():
            runs.add_metric([status], float(n))
        yield runs
        if self.last_finished_failed is not None:
            yield GaugeMetricFamily("shopmind_rebuild_last_failed",
                                    "1 when the most recent finished rebuild failed.",
                                    value=float(self.last_finished_failed))
        yield from self._last_success()

    def _last_success(self) -> Iterator[Metric]:
        last = self.last_success
        if last is None:
            return
        if last.finished_at is not None:
            yield GaugeMetricFamily("shopmind_rebuild_last_success_timestamp_seconds",
                                    "Unix time the last successful rebuild finished.", value=last.finished_at)
        if last.duration_seconds is not None:
            yield GaugeMetricFamily("shopmind_rebuild_duration_seconds",
                                    "Wall time of the last successful rebuild.", value=last.duration_seconds)
        stages = GaugeMetricFamily("shopmind_rebuild_stage_seconds",
                                   "Seconds per stage of the last successful rebuild.", labels=["stage"])
        memory = GaugeMetricFamily("shopmind_rebuild_memory_bytes",
                                   "Memory measures of the last successful rebuild (peak_rss).",
                                   labels=["measure"])
        for stage, value in last.stages.items():
            if stage.endswith("_mb"):  # the worker records peak_rss_mb beside the stage timings
                memory.add_metric([stage.removesuffix("_mb")], value * 1024 * 1024)
            else:
                stages.add_metric([stage], value)
        yield stages
        yield memory
        metrics = GaugeMetricFamily(
            "shopmind_model_metric",
            "Offline metrics of the last successful rebuild (NDCG@k, AUC, ...), by dotted name.",
            labels=["name"],
        )
        for name, value in last.metrics.items():
            metrics.add_metric([name], value)
        yield metrics


async def _table_rows(conn: AsyncConnection) -> dict[str, int]:
    estimates = {name: int(n) for name, n in (await conn.execute(_ESTIMATES)).all()}
    # reltuples is -1 before the first ANALYZE: count those exactly too.
    exact = [t for t in TABLES if t in estimates and estimates[t] < EXACT_COUNT_BELOW]
    if exact:
        query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in exact)
        counts = (await conn.execute(text(query))).one()
        estimates.update(zip(exact, (int(c) for c in counts), strict=True))
    return {t: estimates[t] for t in TABLES if t in estimates}


async def _read_postgres(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = await _table_rows(conn)
        runs = {status: int(n) for status, n in (await conn.execute(_RUNS_BY_STATUS)).all()}
        last = (await conn.execute(_LAST_SUCCESS)).first()
        finished = (await conn.execute(_LAST_FINISHED)).scalar()
    last_success = None
    if last is not None:
        version, finished_at, duration, stages, metrics = last
        flat_metrics = flatten_numbers(metrics or {})
        last_success = LastRebuild(
            version=version, finished_at=finished_at, duration_seconds=duration,
            stages=flatten_numbers(stages or {}),
            metrics=dict(sorted(flat_metrics.items())[:MAX_MODEL_METRICS]),
        )
    return {
        "table_rows": rows, "runs_by_status": runs, "last_success": last_success,
        "last_finished_failed": None if finished is None else finished == "failed",
    }


async def read_snapshot(
    engine: AsyncEngine, redis: aioredis.Redis, keys: Keys, timeout: float = 3.0
) -> Snapshot:
    """Read shared state; a dependency that fails or exceeds `timeout` is reported down, never raised."""
    fields: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            fields.update(await _read_postgres(engine))
        fields["postgres_up"] = True
    except Exception as exc:  # any failure is "down" for this scrape, and said so in the log
        log.warning("metrics.postgres_unavailable", extra={"error": type(exc).__name__})
        fields["postgres_up"] = False
    try:
        async with asyncio.timeout(timeout):
            version = await redis.get(keys.model_pointer())
        fields["redis_up"] = True
        fields["model_version"] = version.decode() if isinstance(version, bytes) else version
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("metrics.redis_unavailable", extra={"error": type(exc).__name__})
        fields["redis_up"] = False
    return Snapshot(**fields)


class SnapshotCache:
    """One snapshot per `ttl` seconds per process; concurrent scrapes share one read."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._value: Snapshot | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, engine: AsyncEngine, redis: aioredis.Redis, keys: Keys) -> Snapshot:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl:
                self._value = await read_snapshot(engine, redis, keys)
                self._at = time.monotonic()
            return self._value
