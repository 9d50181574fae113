"""One rebuild on a Dask cluster: `app.worker.pipeline._rebuild`'s stages over user shards.

The bookkeeping (the run record, the version's publication, erasures, hydration's sentinel) is the
pipeline's own; what differs is where the work runs. The driver:
- plans the shards in an exported Postgres snapshot and keeps it open until the end, so a shard that
  Dask loads again after losing a worker reads the same instant;
- chooses every model on a user sample (the whole log on a shop under `SAMPLE_EVENTS`, which makes the
  result the in-process rebuild's);
- receives item-sized results and one small array per shopper (probabilities, revenues) for the
  shop-wide percentiles. The per-shopper records are written to Redis by the workers, into the new
  version's keys, which nobody reads before the pointer flips: a task that runs twice writes the same
  fields twice.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack, closing
from typing import Any

import numpy as np
import psycopg
import redis

from app.distributed import recommend, scores, shard_tasks
from app.distributed.cluster import connect, gather, submit, tree_sum
from app.distributed.shards import ShardPlan, load_shard, planned
from app.eventlog import EventLog
from app.recommend.algo_validate import VALIDATION_MAX_EVENTS
from app.settings import Settings
from app.store.keys import Keys
from app.store.versions import VersionWriter, new_version
from app.worker import erasures, hydrate, stage_triggers
from app.worker.load import Snapshot
from app.worker.pipeline import (
    RunResult,
    Stages,
    after_hydrate,
    nothing_to_build,
    prepare_load,
    publish_version,
    record_run,
)
from app.worker.stage_audience import publish_audiences
from app.worker.stage_recommend import publish_lookalikes, publish_models

log = logging.getLogger(__name__)

#: Events of the user sample the driver chooses models on (validation samples as much in one process).
SAMPLE_EVENTS = VALIDATION_MAX_EVENTS
SAMPLE_SEED = 0


def rebuild_on_dask(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    run_id: int,
    progress: bool,
    now: float | None,
    fence: tuple[str, str],
) -> RunResult:
    assert settings.dask_scheduler and settings.database_url
    with closing(connect(settings.dask_scheduler)) as dask:
        return _rebuild(conn, client, keys, settings, run_id, progress, time.time() if now is None else now,
                        fence, dask)  # fmt: skip


def _rebuild(
    conn: psycopg.Connection[Any], client: redis.Redis, keys: Keys, settings: Settings, run_id: int,
    progress: bool, now: float, fence: tuple[str, str], dask: Any,
) -> RunResult:
    assert settings.database_url
    stages = Stages(progress)
    started = time.perf_counter()
    workers = max(1, len(dask.scheduler_info().get("workers", {})))
    with ExitStack() as open_snapshot:
        with stages.stage("load"):
            skipped = prepare_load(conn, client, keys)
            plan = open_snapshot.enter_context(planned(settings.database_url, now, min_shards=2 * workers))
            snaps = [submit(dask, load_shard, settings.database_url, plan, shard) for shard in plan.shards]
            sizes = gather(dask, [submit(dask, shard_tasks.sizes, s) for s in snaps])
            n_events = sum(n for n, _, _, _ in sizes)
            orphans = sum(o for _, o, _, _ in sizes)
            newest = max((t for _, _, t, _ in sizes), default=float("-inf"))
            oldest = min((t for _, _, _, t in sizes), default=float("inf"))
            driver = _driver_snapshot(plan, orphans)
            if n_events == 0 or plan.n_items == 0:
                nothing_to_build(conn, client, keys, run_id)
            sample = _sample(dask, plan, snaps, [n for n, _, _, _ in sizes])
        with stages.stage("recommend"):
            rec = recommend.build_recommender(dask, plan, snaps, sample.log, settings)
        with stages.stage("audience"):
            audiences = recommend.build_audiences(dask, plan, snaps, rec)
        with stages.stage("propensity"):
            propensity = scores.build_propensity(dask, plan, snaps, sample, settings, oldest)
        with stages.stage("value"):
            value = scores.build_value(dask, plan, snaps, sample, settings)
        version = new_version()
        writer = VersionWriter(client, keys, version)
        try:
            with stages.stage("publish"):
                publish_models(writer, plan.item_ids, plan.catalog.eligible, rec.evidence, rec.popularity, rec.cf,
                               rec.content, rec.content_nn)  # fmt: skip
                writer.blob(
                    "users", b"\n".join(gather(dask, [submit(dask, shard_tasks.user_id_lines, s) for s in snaps]))
                )
                publish_lookalikes(writer, rec.user_row_ids, rec.user_nn, rec.user_rows)
                publish_audiences(writer, driver, audiences)
                user_parts, user_zsets = scores.publish(dask, snaps, plan, settings, writer, propensity, value)
                meta = {
                    "n_users": plan.n_users, "n_items": plan.n_items, "n_events": n_events,
                    "user_parts": ",".join(["user_nn", *user_parts]), "user_zsets": ",".join(user_zsets),
                    "rebuilt_on": f"dask: {workers} workers, {len(plan.shards)} shards",
                    **rec.meta(), **propensity.meta(), **value.meta(),
                }  # fmt: skip
                publish_version(conn, client, keys, settings, writer, driver, meta, fence)
        except BaseException:
            writer.discard()
            raise
        stage_triggers.record_crossings(conn, scores.high_tiers(dask, snaps, plan, propensity))  # only once published
        with stages.stage("hydrate"):
            erased = erasures.since(conn, driver)
            hydrated = _hydrate(dask, client, keys, settings, plan, snaps, driver, max(now, newest),
                                repair=skipped is not None, erased=erased)  # fmt: skip
            after_hydrate(conn, client, keys, driver, erased, hydrated, skipped)
    metrics = {"recommend": rec.metrics, "propensity": propensity.metrics, "value": value.metrics,
               "orphan_events": orphans, "shards": len(plan.shards), "dask_workers": workers}  # fmt: skip
    return record_run(conn, run_id, version, stages, metrics, started)


def _driver_snapshot(plan: ShardPlan, orphans: int) -> Snapshot:
    """A snapshot with the catalogue and no events: what the item-side and erasure steps read."""
    empty = EventLog(
        user=np.zeros(0, np.int32), item=np.zeros(0, np.int32), type=np.zeros(0, np.int8),
        value=np.zeros(0, np.float32), price=np.zeros(0, np.float32), ts=np.zeros(0), session=np.zeros(0, np.int32),
        user_ids=np.zeros(0, dtype=object), item_ids=plan.item_ids,
    )  # fmt: skip
    return Snapshot(log=empty, catalog=plan.catalog, user_attributes=[], now=plan.now, orphan_events=orphans,
                    erasures=plan.erasures)  # fmt: skip


def _sample(dask: Any, plan: ShardPlan, snaps: list[Any], events: list[int]) -> shard_tasks.Part:
    """Every event when the shop has at most SAMPLE_EVENTS (the driver then chooses exactly what the
    in-process rebuild chooses), else the events of a share of the shoppers drawn by id."""
    share = SAMPLE_EVENTS / max(1, sum(events))
    if share >= 1:
        parts = [submit(dask, shard_tasks.whole, s) for s in snaps]
    else:
        parts = [submit(dask, shard_tasks.sample, s, share, SAMPLE_SEED) for s in snaps]
    return shard_tasks.concat(gather(dask, parts), plan.item_ids)


def _hydrate(
    dask: Any,
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    plan: ShardPlan,
    snaps: list[Any],
    driver: Snapshot,
    t0: float,
    repair: bool,
    erased: list[str],
) -> bool:
    """`hydrate.refresh_realtime` with the popularity summed over the shards and the histories written
    by the workers."""
    parts = [submit(dask, shard_tasks.popularity_part, s, t0, settings) for s in snaps]
    score = np.asarray(gather(dask, tree_sum(dask, parts)))
    hydrate.write_popularity(client, keys, settings, driver, score, t0)
    if not repair and hydrate.is_hydrated(client, keys):
        return False
    hydrate.hydrate_items(client, keys, driver)
    gather(dask, [submit(dask, shard_tasks.hydrate_histories, s, settings, erased) for s in snaps])
    client.set(keys.hydrated(), str(time.time()))
    return True
