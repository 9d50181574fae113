"""One rebuild: load Postgres -> build and validate models -> publish a new version -> record the run.

Fails loudly: a failing stage discards the half-written version (the previous one keeps serving),
records the error in model_runs and re-raises. One rebuild at a time, guarded by a Redis lock that
expires on its own if the worker dies mid-run.
"""

from __future__ import annotations

import logging
import resource
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import psycopg
import redis
from psycopg.types.json import Jsonb

from app.db import libpq_url
from app.recommend.algo_audience import ItemAudiences
from app.settings import Settings
from app.store import erasure
from app.store.client import make_redis
from app.store.keys import Keys
from app.store.versions import VersionWriter, new_version
from app.worker import erasures, hydrate, repair, stage_triggers
from app.worker.load import Snapshot, analyze_unanalyzed, load_snapshot
from app.worker.lock import RebuildLock
from app.worker.stage_audience import build_audiences, publish_audiences
from app.worker.stage_propensity import PropensityBuild, audience_parts, build_propensity, publish_propensity
from app.worker.stage_recommend import RecommenderBuild, build_recommender, publish_recommender
from app.worker.stage_value import ValueBuild, build_value, publish_value

log = logging.getLogger(__name__)

A = TypeVar("A")
B = TypeVar("B")


class RebuildBusy(RuntimeError):
    """Another rebuild holds the lock."""


class NothingToBuild(RuntimeError):
    """The shop has no events (or no items) yet: there is no model to build."""


@dataclass
class RunResult:
    run_id: int
    version: str
    stages: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Stages:
    def __init__(self, progress: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.seconds[name] = round(took, 3)
        log.info("rebuild.stage", extra={"stage": name, "seconds": round(took, 3), "rss_mb": _peak_rss_mb()})
        if self.progress:
            print(f"  {name:<12} {took:8.2f} s   peak RSS {_peak_rss_mb():8.0f} MB", flush=True)


def _start_run(conn: psycopg.Connection[Any], run_id: int | None, trigger: str) -> int:
    # Runs left "running" by a worker that died can only be stale: we hold the lock now.
    conn.execute(
        "UPDATE model_runs SET status = 'failed', finished_at = now(),"
        " error = 'abandoned: the worker stopped mid-run' WHERE status = 'running'"
    )
    if run_id is not None:
        row = conn.execute(
            "UPDATE model_runs SET status = 'running', started_at = now() WHERE id = %s RETURNING id",
            (run_id,),
        ).fetchone()
        if row is not None:
            return int(row[0])
    row = conn.execute(
        "INSERT INTO model_runs (status, trigger) VALUES ('running', %s) RETURNING id", (trigger,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def rebuild(
    settings: Settings,
    trigger: str = "schedule",
    run_id: int | None = None,
    progress: bool = False,
    now: float | None = None,
) -> RunResult:
    assert settings.database_url and settings.redis_url
    client = make_redis(settings.redis_url, cluster=settings.redis_cluster)
    keys = Keys.of(settings)
    lock = RebuildLock(client, keys.rebuild_lock(), settings.rebuild_lock_seconds)
    if not lock.acquire():
        client.close()
        raise RebuildBusy("another rebuild is running")
    try:
        # renewed while the rebuild works; the publish is fenced by its token
        with lock, psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
            run_id = _start_run(conn, run_id, trigger)
            try:
                return _rebuild(conn, client, keys, settings, run_id, progress, now, (lock.key, lock.token))
            except NothingToBuild:
                raise
            except BaseException as exc:
                conn.execute(
                    "UPDATE model_runs SET status = 'failed', finished_at = now(),"
                    " duration_seconds = extract(epoch FROM now() - started_at), error = %s WHERE id = %s",
                    (f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"[:4000], run_id),
                )
                log.error("rebuild.failed", extra={"run_id": run_id, "error": repr(exc)})
                raise
    finally:
        client.close()


def _rebuild(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    run_id: int,
    progress: bool,
    now: float | None,
    fence: tuple[str, str],
) -> RunResult:
    if settings.dask_scheduler:
        from app.distributed.rebuild import rebuild_on_dask  # dask is an optional extra

        return rebuild_on_dask(conn, client, keys, settings, run_id, progress, now, fence)
    stages = Stages(progress)
    started = time.perf_counter()
    with stages.stage("load"):
        skipped = prepare_load(conn, client, keys)
        snapshot = load_snapshot(conn, now)
    if len(snapshot.log) == 0 or snapshot.log.n_items == 0:
        nothing_to_build(conn, client, keys, run_id)

    def recommend_side() -> tuple[RecommenderBuild, ItemAudiences]:
        with stages.stage("recommend"):
            recommender = build_recommender(snapshot, settings)
        with stages.stage("audience"):
            return recommender, build_audiences(snapshot, recommender)

    def customer_side() -> tuple[PropensityBuild, ValueBuild]:
        with stages.stage("propensity"):
            propensity = build_propensity(snapshot, settings)
        with stages.stage("value"):
            return propensity, build_value(snapshot, settings)

    (recommender, audiences), (propensity, value) = side_by_side(
        recommend_side, customer_side, settings.rebuild_parallel_stages
    )
    value_hashes, value_zsets = value.parts()
    version = new_version()
    writer = VersionWriter(client, keys, version)
    try:
        with stages.stage("publish"):
            publish_recommender(writer, snapshot, recommender)
            publish_audiences(writer, snapshot, audiences)
            user_parts = publish_propensity(writer, snapshot, propensity)
            publish_value(writer, value)
            meta = {
                "n_users": snapshot.log.n_users,
                "n_items": snapshot.log.n_items,
                "n_events": len(snapshot.log),
                "user_parts": ",".join(["user_nn", *user_parts, *value_hashes]),
                "user_zsets": ",".join([*audience_parts(propensity), *value_zsets]),
                **recommender.meta(),
                **propensity.meta(),
                **value.meta(),
            }
            publish_version(conn, client, keys, settings, writer, snapshot, meta, fence)
    except BaseException:
        writer.discard()
        raise
    stage_triggers.record_crossings(conn, stage_triggers.high_tiers(propensity))  # only once published
    with stages.stage("hydrate"):
        erased = erasures.since(conn, snapshot)
        hydrated = hydrate.refresh_realtime(client, keys, settings, snapshot, repair=skipped is not None, erased=erased)
        after_hydrate(conn, client, keys, snapshot, erased, hydrated, skipped)
    metrics = {"recommend": recommender.metrics, "propensity": propensity.metrics, "value": value.metrics,
               "orphan_events": snapshot.orphan_events}
    return record_run(conn, run_id, version, stages, metrics, started)


def side_by_side(first: Callable[[], A], second: Callable[[], B], parallel: bool) -> tuple[A, B]:
    """Both results; with `parallel`, `second` runs on a thread of its own while `first` runs here.

    The two sides of a rebuild read the snapshot and never write it. The propensity side runs mostly
    on one core (its boosters fit single-threaded on 100k-row samples, its features are numpy passes
    over the log), so beside the recommendation side (1.7 of two cores) it uses what that side leaves:
    at 1M shoppers x 10M events the two sides took 249-261 s side by side against 305-323 s in turn,
    at a peak of 6.3-6.7 GB against 4.4-4.6 (`Settings.rebuild_parallel_stages` turns it off). A
    failure on either side fails the rebuild once both have stopped (a running thread cannot be
    interrupted).
    """
    if not parallel:
        return first(), second()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rebuild-customers") as pool:
        later = pool.submit(second)
        return first(), later.result()


def prepare_load(conn: psycopg.Connection[Any], client: redis.Redis, keys: Keys) -> Any:
    """What precedes the snapshot; returns the repair marker `repair.covered` takes at the end."""
    analyze_unanalyzed(conn)
    skipped = repair.pending(conn)  # before the snapshot: it then holds every write Redis missed so far
    hydrate.mark_popularity(client, keys)  # what ingest adds from here on survives the swap
    return skipped


def nothing_to_build(conn: psycopg.Connection[Any], client: redis.Redis, keys: Keys, run_id: int) -> NoReturn:
    conn.execute(
        "UPDATE model_runs SET status = 'skipped', finished_at = now(), error = %s WHERE id = %s",
        ("nothing to build yet: no events", run_id),
    )
    client.set(keys.hydrated(), str(time.time()))  # Redis already mirrors an empty shop
    raise NothingToBuild("nothing to build yet: the shop has no events")


def publish_version(
    conn: psycopg.Connection[Any], client: redis.Redis, keys: Keys, settings: Settings, writer: VersionWriter,
    snapshot: Snapshot, meta: dict[str, Any], fence: tuple[str, str],
) -> None:
    """Write the version's meta, erase from it whoever was erased since the snapshot, flip the pointer."""
    writer.meta({"version": writer.version, "built_at": snapshot.now, **meta})
    with erasures.settled(conn):  # erasures in flight land first; later ones find this version
        erasure.erase_from_version(client, keys, writer.version, erasures.since(conn, snapshot))
        writer.publish(settings.keep_versions, fence)
    client.delete(keys.live_content())  # the new version has every item's content neighbours


def after_hydrate(
    conn: psycopg.Connection[Any], client: redis.Redis, keys: Keys, snapshot: Snapshot, erased: list[str],
    hydrated: bool, skipped: Any,
) -> None:
    if hydrated:
        with erasures.settled(conn):  # those erased while it hydrated: their history may be back
            erasures.erase_realtime(client, keys, [u for u in erasures.since(conn, snapshot) if u not in erased])
    erasures.prune(conn)
    repair.covered(conn, skipped)


def record_run(
    conn: psycopg.Connection[Any], run_id: int, version: str, stages: Stages, metrics: dict[str, Any], started: float
) -> RunResult:
    duration = time.perf_counter() - started
    stages.seconds["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    conn.execute(
        "UPDATE model_runs SET status = 'succeeded', version = %s, finished_at = now(),"
        " duration_seconds = %s, stages = %s, metrics = %s WHERE id = %s",
        (version, duration, Jsonb(stages.seconds), Jsonb(metrics), run_id),
    )
    log.info("rebuild.done", extra={"run_id": run_id, "version": version, "seconds": round(duration, 2)})
    return RunResult(run_id=run_id, version=version, stages=stages.seconds, metrics=metrics)
