"""The worker loop: rebuild on a schedule, on demand (queued by the API), and after Redis was lost."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import psycopg
import redis
from redis.exceptions import RedisClusterException

from app.db import libpq_url
from app.events import partitions
from app.experiments import exposures
from app.settings import Settings
from app.store.client import make_redis
from app.store.keys import Keys
from app.worker import hydrate, repair
from app.worker.pipeline import NothingToBuild, RebuildBusy, rebuild

log = logging.getLogger(__name__)

REPAIR_CHECK_SECONDS = 30.0  # how often an idle worker asks Postgres whether Redis missed writes
FLUSH_SECONDS = 5.0
"""How often the experiments' exposures waiting in Redis are COPYd to Postgres (one batch a pass)."""
PARTITIONS_SECONDS = 3600.0
"""How often the events' monthly partitions are made ahead and retention applied (also at start)."""


def run_forever(settings: Settings, stop: threading.Event) -> None:
    assert settings.redis_url
    keys = Keys.of(settings)
    client = make_redis(settings.redis_url, cluster=settings.redis_cluster)
    interval = settings.rebuild_interval_minutes * 60
    next_at = time.monotonic()  # rebuild at start: re-hydrates Redis and publishes a fresh model
    check_at = next_at + REPAIR_CHECK_SECONDS
    flush_at = partitions_at = time.monotonic()
    while not stop.is_set():
        if settings.database_url and time.monotonic() >= partitions_at:
            partitions_at = time.monotonic() + PARTITIONS_SECONDS
            maintain_partitions(settings.database_url, settings.event_retention_months)
        if settings.database_url and time.monotonic() >= flush_at:
            flush_at = time.monotonic() + FLUSH_SECONDS
            flush_exposures(settings.database_url, client, keys)
        job: int | None = None
        due = time.monotonic() >= next_at
        try:
            if not due:
                popped = client.brpop([keys.rebuild_queue()], timeout=2)
                if popped is not None:
                    job, due = int(popped[1]), True
                elif not hydrate.is_hydrated(client, keys):
                    due = True  # Redis was flushed or restarted: rebuild its state now
                elif time.monotonic() >= check_at and settings.database_url:
                    check_at = time.monotonic() + REPAIR_CHECK_SECONDS
                    due = repair.needed(settings.database_url)  # Redis answers again and missed writes
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            if stop.is_set():  # shutting down: Ctrl-C reached the embedded Redis first
                break
            log.warning("worker.redis_unavailable", extra={"error": type(exc).__name__})
            stop.wait(2)
            continue
        if not due:
            continue
        retry_on_schedule = False
        try:
            rebuild(settings, trigger="api" if job else "schedule", run_id=job)
        except RebuildBusy:
            log.info("worker.busy")
        except NothingToBuild:
            log.info("worker.nothing_to_build")
            retry_on_schedule = True
        except Exception:
            log.exception("worker.rebuild_failed")  # recorded in model_runs; the old version serves
            retry_on_schedule = True
        next_at = time.monotonic() + interval
        # pending skips do not re-run a rebuild that just failed (or had no events) every check
        check_at = next_at if retry_on_schedule else time.monotonic() + REPAIR_CHECK_SECONDS
    client.close()


def flush_exposures(database_url: str, client: redis.Redis, keys: Keys) -> int:
    """The exposures' batched COPY; a failure leaves them in Redis for the next pass (logged)."""
    try:
        with psycopg.connect(libpq_url(database_url), connect_timeout=5) as conn:
            return exposures.flush_sync(conn, client, keys)
    except (psycopg.Error, redis.RedisError, RedisClusterException, OSError) as exc:
        log.warning("worker.exposures_flush_failed", extra={"error": type(exc).__name__})
        return 0
    except Exception:  # a housekeeping bug must not stop the worker's rebuilds
        log.exception("worker.exposures_flush_failed")
        return 0


def maintain_partitions(database_url: str, retention_months: int | None) -> partitions.Maintained | None:
    """Make the coming months' event partitions and drop those past retention (`app.events.partitions`);
    with Postgres unreachable, logged and left for the next pass."""
    try:
        with psycopg.connect(libpq_url(database_url), connect_timeout=5, autocommit=True) as conn:
            return partitions.maintain(conn, datetime.now(UTC), retention_months)
    except (psycopg.Error, OSError) as exc:
        log.warning("worker.partitions_failed", extra={"error": type(exc).__name__})
        return None
    except Exception:  # a housekeeping bug must not stop the worker's rebuilds
        log.exception("worker.partitions_failed")
        return None


class BackgroundWorker:
    """The worker inside `shopmind serve` (embedded default): a daemon thread running run_forever."""

    def __init__(self, settings: Settings) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_forever, args=(settings, self._stop), name="shopmind-worker", daemon=True
        )

    def start(self) -> BackgroundWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def start_background_worker(settings: Settings) -> BackgroundWorker:
    return BackgroundWorker(settings).start()
