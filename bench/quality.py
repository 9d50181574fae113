"""Recommendation quality on MovieLens 100K through the real ingest -> rebuild -> serve path.

    python bench/quality.py [PATH_TO_ml-100k]   (default ../shared/data/ml-100k)

Each user's last 20 % of ratings (by time) is the test set. The training ratings are ingested as
`rating` events (timestamps shifted so the last rating is a day ago; the order is unchanged) and the
movies as items (title, genres as categories) through the service functions the API calls; the worker
pipeline rebuilds; every test user is then served by RecommendService from Redis, excluding what they
rated. Popularity, CF, content and hybrid are the same serving path (cold-start popularity, alpha=1,
alpha=0, the validated alpha). Peers — implicit's ItemKNN and ALS, and EASE — are fitted on the same
training ratings in the same run, their hyperparameters tuned on a validation split inside training.
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

from app.eventlog import EventLog
from app.recommend.algo_metrics import ranking_metrics
from app.settings import Settings
from bench._server import scratch_database
from bench.offline_quality import PEER_GRIDS, Split, load_movielens

ROOT = Path(__file__).resolve().parent.parent


def genres_of(path: Path) -> list[list[str]]:
    genres = [line.split("|")[0] for line in (path / "u.genre").read_text("latin-1").splitlines() if line]
    out = []
    for line in (path / "u.item").read_text("latin-1").splitlines():
        if line:
            flags = line.split("|")[5:5 + len(genres)]
            out.append([g for g, f in zip(genres, flags, strict=True) if f == "1"])
    return out


async def ingest(settings: Settings, log: EventLog, titles: list[str], genres: list[list[str]], shift: float) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.catalog import service as catalog_service
    from app.catalog.schemas import ItemWithId
    from app.db import make_async_engine
    from app.events import service as events_service
    from app.store.client import make_async_redis
    from app.store.keys import Keys

    assert settings.database_url and settings.redis_url
    engine = make_async_engine(settings.database_url, pool_size=2)
    redis = make_async_redis(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    items = [ItemWithId(item_id=str(i), title=titles[k], categories=genres[k] or ["unknown"])
             for k, i in enumerate(log.item_ids)]
    async with async_sessionmaker(engine, class_=AsyncSession)() as session, session.begin():
        await catalog_service.upsert_items(session, items)
    await catalog_service.publish_items(redis, keys, items)
    order = np.argsort(log.ts, kind="stable")
    accepted = 0
    for start in range(0, len(order), 5000):
        rows = order[start:start + 5000]
        batch: list[dict[str, Any]] = [
            {"event_id": f"ml-{k}", "user_id": str(log.user_ids[log.user[k]]),
             "item_id": str(log.item_ids[log.item[k]]), "type": "rating", "value": float(log.value[k]),
             "timestamp": float(log.ts[k] + shift)}
            for k in rows
        ]
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
    redis = make_async_redis(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    service = RecommendService(redis, keys, ModelCache(redis, keys))
    version = text(await redis.get(keys.model_pointer()))
    item_pos = {str(i): k for k, i in enumerate(split.train.item_ids)}
    runs: dict[str, Any] = {"popularity": None, "cf": 1.0, "content": 0.0, "hybrid": "validated"}
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
                recs = await service.recommend(version, [], seen, q)
            else:
                recs = await service.for_user(user_id, q)
            seconds += time.perf_counter() - t
            ids = [item_pos[i.item_id] for i in recs.items]
            tops[name][row, :len(ids)] = ids
    await redis.aclose()
    return tops, seconds / (len(split.users) * len(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--postgres", default=os.environ.get("SHOPMIND_BENCH_POSTGRES",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("SHOPMIND_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    path = Path(args.path)
    from threadpoolctl import threadpool_limits

    from app.worker.pipeline import rebuild

    log, _ = load_movielens(path)
    titles = [line.split("|")[1] for line in (path / "u.item").read_text("latin-1").splitlines() if line]
    outer = Split(log)
    inner = Split(outer.train)
    shift = time.time() - 86400 - float(log.ts.max())
    rows: dict[str, dict[str, float]] = {}
    prefix = f"benchq:{uuid.uuid4().hex[:8]}:"
    with scratch_database(args.postgres) as db, threadpool_limits(1):
        settings = Settings(database_url=db, redis_url=args.redis, redis_prefix=prefix,
                            propensity_targets=[], _env_file=None)  # type: ignore[call-arg]
        t = time.perf_counter()
        accepted = asyncio.run(ingest(settings, outer.train, titles, genres_of(path), shift))
        print(f"ingested {accepted:,} training ratings and {log.n_items} movies in {time.perf_counter() - t:.1f} s")
        print("rebuild (the worker pipeline; propensity off for this table):")
        run = rebuild(settings, trigger="bench", progress=True, now=time.time())
        build = run.stages["recommend"]
        tops, per_request = asyncio.run(serve_all(settings, outer))
        for name, top in tops.items():
            rows[f"ours {name} (served)"] = ranking_metrics(top, outer.relevant, (10, 20))
        import redis as redis_sync

        client = redis_sync.Redis.from_url(args.redis)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    if not args.no_peers:
        with threadpool_limits(1):
            for name, (label, grid, fn) in PEER_GRIDS.items():
                best = max(grid, key=lambda p, fn=fn: fn(inner, p)["ndcg@10"])
                rows[f"{name} [{label}={best}]"] = fn(outer, best)
    print(f"\nMovieLens 100K, per-user time split (last 20 % = test): {len(outer.users)} test users, "
          f"{len(outer.train):,} train / {len(outer.test):,} test ratings")
    print(f"{'method':50s} {'NDCG@10':>8s} {'Recall@20':>10s} {'Prec@10':>8s}")
    for name, m in rows.items():
        print(f"{name:50s} {m['ndcg@10']:8.4f} {m['recall@20']:10.4f} {m['precision@10']:8.4f}")
    peers = [m["ndcg@10"] for name, m in rows.items() if name.startswith("peer")]
    if peers:
        ratio = rows["ours hybrid (served)"]["ndcg@10"] / max(peers)
        print(f"\nhybrid / best peer NDCG@10 = {ratio:.3f} (target >= 1.05: {'MET' if ratio >= 1.05 else 'NOT MET'})")
    print(f"recommendation stage of the rebuild: {build:.2f} s (target <= 5 s); "
          f"in-process serving: {per_request * 1000:.1f} ms per request")


if __name__ == "__main__":
    main()
