"""Recommendation quality through the real ingest -> rebuild -> serve path, on data of several shapes.

    python bench/quality.py [--data ../shared/data] [--only NAME ...] [--no-peers]

Every data set of `bench/datasets.py` (MovieLens 100K, online-retail and the same orders thinned to
2-6 items per shopper, the Taobao clickstream, a synthetic multi-year shop whose tastes drift, and
MovieLens as a bulk import with tied timestamps),
each with its natural split. The training events are ingested through the service functions the API
calls (timestamps shifted so the last one is a day ago; order unchanged), items with their text; the
worker pipeline rebuilds (its validation chooses every constant on the training data alone); every
test user is then served by RecommendService from Redis with `exclude_seen=true`, 20 items. The
popularity row is the served cold-start list. Peers (all-time popularity, implicit's item-kNN and
ALS, EASE) are fitted on the same training events, tuned on a validation split carved out of
training the same way as the test. Coverage: the share of the catalog in anybody's top 20.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from app.eventlog import EVENT_TYPES, EventLog
from app.recommend.algo_metrics import ranking_metrics
from app.settings import Settings
from bench import peers
from bench._server import scratch_database
from bench.datasets import DATASETS, Dataset, Split, load
from bench.quality_offline import inner_split

ROOT = Path(__file__).resolve().parent.parent


async def ingest(settings: Settings, log: EventLog, docs: list[str], shift: float) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.catalog import service as catalog_service
    from app.catalog.schemas import ItemWithId
    from app.db import make_async_engine
    from app.events import service as events_service
    from app.store.client import make_async_redis
    from app.store.keys import Keys

    assert settings.database_url and settings.redis_url
    engine = make_async_engine(settings.database_url, pool_size=2)
    redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster)
    keys = Keys.of(settings)
    items = [ItemWithId(item_id=str(i), title=docs[k][:500] or str(i)) for k, i in enumerate(log.item_ids)]
    for start in range(0, len(items), 5000):
        async with async_sessionmaker(engine, class_=AsyncSession)() as session, session.begin():
            await catalog_service.upsert_items(session, items[start:start + 5000])
        await catalog_service.publish_items(redis, keys, items[start:start + 5000])
    order = np.argsort(log.ts, kind="stable")
    accepted = 0
    for start in range(0, len(order), 5000):
        batch: list[dict[str, Any]] = []
        for k in order[start:start + 5000].tolist():
            event: dict[str, Any] = {"event_id": f"e-{k}", "user_id": str(log.user_ids[log.user[k]]),
                                     "item_id": str(log.item_ids[log.item[k]]), "type": EVENT_TYPES[log.type[k]],
                                     "timestamp": float(log.ts[k] + shift)}
            if np.isfinite(log.value[k]):
                event["value"] = float(log.value[k])
            if np.isfinite(log.price[k]):
                event["price"] = float(log.price[k])
            batch.append(event)
        accepted += (await events_service.ingest(engine, redis, keys, settings, batch)).accepted
    await redis.aclose()
    await engine.dispose()
    return accepted


async def serve_all(settings: Settings, split: Split) -> tuple[dict[str, np.ndarray], float]:
    from app.recommend.model_cache import ModelCache
    from app.recommend.service import Query, RecommendService
    from app.store.client import make_async_redis
    from app.store.codec import text
    from app.store.keys import Keys

    assert settings.redis_url
    redis = make_async_redis(settings.redis_url, cluster=settings.redis_cluster)
    keys = Keys.of(settings)
    service = RecommendService(redis, keys, ModelCache(redis, keys))
    version = text(await redis.get(keys.model_pointer()))
    item_pos = {str(i): k for k, i in enumerate(split.train.item_ids)}
    runs: dict[str, Any] = {"popularity": None, "hybrid": "validated"}
    tops = {name: np.full((len(split.users), 20), -1, dtype=np.int32) for name in runs}
    seconds = 0.0
    for row, u in enumerate(split.users):
        user_id = str(split.train.user_ids[u])
        seen = {str(split.train.item_ids[i]) for i in split.seen[row].indices}
        for name, alpha in runs.items():
            q = Query(n=20, available_only=False, exclude_seen=True,
                      alpha=alpha if isinstance(alpha, float) else None)
            t = time.perf_counter()
            if name == "popularity":
                recs = (await service.choose(version, [], seen, q)).dressed()
            else:
                recs = await service.for_user(user_id, q)
            seconds += time.perf_counter() - t
            ids = [item_pos[i.item_id] for i in recs.items]
            tops[name][row, :len(ids)] = ids
    await redis.aclose()
    return tops, seconds / (len(split.users) * len(runs))


def coverage(top: np.ndarray, n_items: int) -> float:
    return float(len(np.unique(top[top >= 0]))) / max(n_items, 1)


def run_dataset(data: Dataset, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from threadpoolctl import threadpool_limits

    from app.worker.pipeline import rebuild

    split = Split(data.log, data.test)
    shift = time.time() - 86400 - float(split.train.ts.max())
    rows: dict[str, dict[str, float]] = {}
    prefix = f"benchq:{uuid.uuid4().hex[:8]}:"
    with scratch_database(args.postgres) as db, threadpool_limits(1):
        settings = Settings(database_url=db, redis_url=args.redis, redis_prefix=prefix,
                            propensity_targets=[], _env_file=None)  # type: ignore[call-arg]
        t = time.perf_counter()
        accepted = asyncio.run(ingest(settings, split.train, data.docs, shift))
        print(f"  ingested {accepted:,} training events and {data.log.n_items:,} items in {time.perf_counter() - t:.1f} s")
        run = rebuild(settings, trigger="bench", progress=False, now=time.time())
        chosen = (run.metrics.get("recommend") or {}).get("chosen")
        print(f"  rebuild: recommendation stage {run.stages['recommend']:.1f} s; chosen {chosen}")
        tops, per_request = asyncio.run(serve_all(settings, split))
        for name, top in tops.items():
            label = "Shopmind served hybrid" if name == "hybrid" else "Shopmind served popularity (cold start)"
            rows[label] = {**ranking_metrics(top, split.relevant, (10, 20)), "coverage": coverage(top, data.log.n_items)}
        print(f"  in-process serving: {per_request * 1000:.1f} ms per request")
        import redis as redis_sync

        client = redis_sync.Redis.from_url(args.redis)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    if not args.no_peers:
        inner = inner_split(data, split)
        with threadpool_limits(1):
            for name, (label, grid, fn) in peers.PEERS.items():
                if not peers.applicable(name, split):
                    continue
                best = max(grid, key=lambda p, fn=fn: ranking_metrics(fn(inner, p), inner.relevant)["ndcg@10"])
                top = fn(split, best)
                rows[f"peer {name} [{label}={best}]" if label else f"peer {name}"] = {
                    **ranking_metrics(top, split.relevant, (10, 20)), "coverage": coverage(top, data.log.n_items)}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--only", nargs="*", default=list(DATASETS))
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("SHOPMIND_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    summary = []
    for name in args.only:
        data = load(name, Path(args.data))
        split = Split(data.log, data.test)
        print(f"\n== {name}: {len(data.log):,} events, {data.log.n_users:,} users, {data.log.n_items:,} items; "
              f"{data.split}; {len(split.users):,} test users", flush=True)
        rows = run_dataset(data, args)
        print(f"  {'method':52s} {'NDCG@10':>8s} {'Recall@20':>10s} {'coverage':>9s}")
        for label, m in rows.items():
            print(f"  {label:52s} {m['ndcg@10']:8.4f} {m['recall@20']:10.4f} {m['coverage']:9.3f}")
        ours = rows["Shopmind served hybrid"]["ndcg@10"]
        peer = max((m["ndcg@10"] for k, m in rows.items() if k.startswith("peer")), default=float("nan"))
        pop = max(m["ndcg@10"] for k, m in rows.items() if "popularity" in k)
        summary.append((name, ours, peer, pop))
    print(f"\n{'data set':18s} {'served NDCG@10':>15s} {'best peer':>10s} {'ratio':>6s} {'> popularity':>13s}")
    for name, ours, peer, pop in summary:
        ratio = ours / peer if peer == peer and peer > 0 else float("nan")
        print(f"{name:18s} {ours:15.4f} {peer:10.4f} {ratio:6.3f} {'yes' if ours > pop else 'NO':>13s}"
              f"   (target ratio >= 1.05: {'MET' if ratio >= 1.05 else 'NOT MET'})")


if __name__ == "__main__":
    main()
