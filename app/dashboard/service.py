"""What the dashboard shows, aggregated where the data lives: SQL GROUP BY, Redis sorted sets and hashes.

Nothing here loops over events or users in Python: event counts come grouped from Postgres, the
propensity histogram is one ZRANGE into numpy, tier counts are ZCOUNTs. Every number is JSON-safe
(non-finite floats become None) because the page embeds it as JSON for the charts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import redis.asyncio as aioredis
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.dashboard import experiments_panel
from app.dashboard import value as value_card
from app.errors import ModelNotReady
from app.events.models import Event
from app.propensity import service as propensity_service
from app.propensity.algo_score import tier_thresholds
from app.recommend.model_cache import ModelCache
from app.recommend.service import Query, RecommendService
from app.runs import service as runs_service
from app.runs.models import ModelRun
from app.store import live_reads
from app.store.codec import decode_item_meta, text
from app.store.keys import Keys
from app.webhooks import health as webhook_health

DAYS = 30
STRATEGIES = ("popularity", "cf", "content", "hybrid")
OFFLINE_METRICS = ("ndcg@10", "recall@20", "precision@10")
PROPENSITY_METRICS = ("auc", "average_precision", "brier", "brier_skill", "base_rate", "n")
EARNED_TYPES = ("click", "add_to_cart", "purchase")
HISTOGRAM_TARGET = "purchase"
HISTOGRAM_BINS = 20
TOP_N = 10
TREND_POOL = 100


def _num(value: Any, digits: int = 4) -> float | None:
    """A rounded float, or None for missing / non-finite values (JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), digits)


@dataclass
class DashboardCache:
    """Per-process results that only change with the model version (the propensity histogram)."""

    histograms: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def put(self, key: tuple[str, str], value: dict[str, Any]) -> None:
        if len(self.histograms) >= 8:
            self.histograms.pop(next(iter(self.histograms)))
        self.histograms[key] = value


async def events_per_day(session: AsyncSession, days: int = DAYS, now: datetime | None = None) -> dict[str, Any]:
    """Event counts per UTC day and type over the last `days` days (today included), plus totals.

    Returns {"days": [iso dates], "types": [...], "counts": {type: [count per day]}, "totals": {...}}.
    """
    today = (now or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    day = func.date_trunc("day", func.timezone("UTC", Event.ts))
    rows = (await session.execute(
        select(day.label("day"), Event.type, func.count()).where(Event.ts >= start).group_by(day, Event.type)
    )).all()
    totals = (await session.execute(
        select(
            func.count(),
            func.count(func.distinct(Event.user_id)),
            func.count().filter(Event.type == "purchase"),
            func.coalesce(func.sum(Event.price).filter(Event.type == "purchase"), 0.0),
        ).where(Event.ts >= start)
    )).one()
    labels = [(start + timedelta(days=d)).date().isoformat() for d in range(days)]
    index = {label: d for d, label in enumerate(labels)}
    counts: dict[str, list[int]] = {}
    for row_day, event_type, n in rows:  # at most days × event types aggregated rows
        position = index.get(row_day.date().isoformat())
        if position is not None:
            counts.setdefault(event_type, [0] * days)[position] = int(n)
    types = sorted(counts, key=lambda t: -sum(counts[t]))
    return {
        "days": labels,
        "types": types,
        "counts": {t: counts[t] for t in types},
        "totals": {"events": int(totals[0]), "shoppers": int(totals[1]), "purchases": int(totals[2]),
                   "revenue": _num(totals[3], 2)},
    }


def _run_row(run: ModelRun) -> dict[str, Any]:
    return {
        "id": run.id, "status": run.status, "trigger": run.trigger, "version": run.version,
        "started_at": run.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if run.started_at else None,
        "duration_seconds": _num(run.duration_seconds, 1),
        "stages": {k: _num(v, 2) for k, v in (run.stages or {}).items()},
        "error": (run.error or "")[:300] or None,
    }


def _choices(recommend: dict[str, Any]) -> list[dict[str, Any]]:
    """Each constant validation chose: the value kept and every value tried with its NDCG@10."""
    grid, chosen = recommend.get("grid"), recommend.get("chosen")
    if not isinstance(grid, dict) or not isinstance(chosen, dict):
        return []
    return [{"knob": knob, "chosen": chosen.get(knob),
             "tried": [(label, _num(score)) for label, score in values.items()]}
            for knob, values in grid.items() if isinstance(values, dict)]


async def model_section(session: AsyncSession, version: str | None, meta: dict[str, str]) -> dict[str, Any]:
    """The live version, its meta and offline metrics (from its model_runs row), and recent rebuilds."""
    runs = await runs_service.recent_runs(session, limit=15)
    metrics: dict[str, Any] = {}
    if version is not None:
        run = await session.scalar(
            select(ModelRun).where(ModelRun.version == version, ModelRun.status == "succeeded")
            .order_by(ModelRun.id.desc()).limit(1)
        )
        metrics = dict(run.metrics or {}) if run is not None else {}
    recommend: dict[str, Any] = metrics.get("recommend") or {}
    offline = {s: {m: _num(recommend.get(f"{s}.{m}")) for m in OFFLINE_METRICS} for s in STRATEGIES}
    propensity: dict[str, Any] = {}
    for target, values in (metrics.get("propensity") or {}).items():
        if isinstance(values, dict):
            propensity[target] = {
                "status": values.get("status", "ok"), "reason": values.get("reason"),
                **{m: _num(values.get(m)) for m in PROPENSITY_METRICS},
            }
    built_at = _num(float(meta.get("built_at", "nan")))
    return {
        "version": version,
        "built_at": datetime.fromtimestamp(built_at, UTC).strftime("%Y-%m-%d %H:%M UTC") if built_at else None,
        "facts": {k: meta.get(k) for k in ("n_users", "n_items", "n_events", "alpha", "cf_variant")},
        "validation_skipped": recommend.get("validation_skipped"),
        "holdout": recommend.get("holdout") if isinstance(recommend.get("holdout"), dict) else None,
        "choices": _choices(recommend),
        "offline": offline,
        "has_offline": any(v is not None for row in offline.values() for v in row.values()),
        "propensity": propensity,
        "value": value_card.validated(metrics.get("value")),
        "runs": [_run_row(r) for r in runs],
    }


async def earned(redis: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    """Events that carried a recommendation_id, per strategy and type (the recstats hashes)."""
    strategies = sorted(text(m) for m in await redis.smembers(keys.recommendation_strategies()))
    pipe = redis.pipeline(transaction=False)
    for strategy in strategies:
        pipe.hmget(keys.recommendation_stats(strategy), list(EARNED_TYPES))
    rows = await pipe.execute() if strategies else []
    table = np.array([[int(v or 0) for v in row] for row in rows], dtype=np.int64).reshape(-1, len(EARNED_TYPES))
    order: NDArray[np.intp] = np.lexsort((np.arange(len(strategies)), -table[:, 2], -table.sum(axis=1)))
    return {
        "strategies": [strategies[i] for i in order],
        "types": list(EARNED_TYPES),
        "counts": {t: table[order, k].tolist() for k, t in enumerate(EARNED_TYPES)},
    }


def _bin_width(top: float) -> float:
    """The narrowest round bin width that covers [0, top] in at most HISTOGRAM_BINS bins."""
    for width in (0.005, 0.01, 0.02, 0.025, 0.05):
        if width * HISTOGRAM_BINS >= top:
            return width
    return 1.0 / HISTOGRAM_BINS


async def propensity_distribution(
    redis: aioredis.Redis, keys: Keys, version: str | None, meta: dict[str, str], cache: DashboardCache,
) -> dict[str, Any]:
    """Histogram of the HISTOGRAM_TARGET probabilities and tier counts per target, for `version`.

    Tiers use the scoring's own thresholds (`tier_thresholds` of the stored base rate), counted with
    ZCOUNT on each target's audience sorted set. Cached per (version, target): a version never changes.
    """
    if version is None:
        return {"target": HISTOGRAM_TARGET, "edges": [], "counts": [], "tiers": {}}
    cached = cache.histograms.get((version, HISTOGRAM_TARGET))
    if cached is not None:
        return cached
    base_rates: dict[str, float] = json.loads(meta.get("propensity_base_rates") or "{}")
    targets = [t for t in base_rates if math.isfinite(float(base_rates[t]))]
    pipe = redis.pipeline(transaction=False)
    for target in targets:
        key = keys.model(version, f"aud:{target}")
        low_below, high_from = tier_thresholds(float(base_rates[target]))
        pipe.zcard(key)
        pipe.zcount(key, "-inf", f"({low_below!r}")
        pipe.zcount(key, repr(high_from), "+inf")
    counted = await pipe.execute() if targets else []
    tiers: dict[str, dict[str, Any]] = {}
    for k, target in enumerate(targets):
        total, low, high = (int(x) for x in counted[3 * k: 3 * k + 3])
        low_below, high_from = tier_thresholds(float(base_rates[target]))
        tiers[target] = {"users": total, "low": low, "medium": total - low - high, "high": high,
                         "base_rate": _num(base_rates[target]), "low_below": _num(low_below),
                         "high_from": _num(high_from)}
    rows = cast(list[tuple[bytes, float]], await redis.zrange(
        keys.model(version, f"aud:{HISTOGRAM_TARGET}"), 0, -1, withscores=True
    ))
    p = np.fromiter((s for _, s in rows), dtype=np.float64, count=len(rows))
    top = float(p.max()) if len(p) else 1.0
    width = _bin_width(top)
    bins = max(1, math.ceil(top / width - 1e-9))  # bins of a round width up to the highest probability
    counts, edges = np.histogram(p, bins=bins, range=(0.0, bins * width))
    result = {
        "target": HISTOGRAM_TARGET,
        "edges": [round(float(e), 4) for e in edges],
        "counts": counts.astype(int).tolist(),
        "mean": _num(float(p.mean())) if len(p) else None,
        "tiers": tiers,
    }
    cache.put((version, HISTOGRAM_TARGET), result)
    return result


async def top_items(redis: aioredis.Redis, keys: Keys, model_cache: ModelCache, version: str | None,
                    n: int = TOP_N) -> dict[str, Any]:
    """The live top items (forward-decayed popularity zset) and the trending ones.

    Trending compares ranks, which are scale-free: an item's rank in the live popularity (half-life
    `popularity_half_life_days`, 7 days by default, current to the last event) against its rank in the
    popularity vector of the current model (half-life 30 days, as of the last rebuild). Items of the
    live top TREND_POOL that climbed the most are trending; items the model does not know yet count as
    climbing from the bottom.
    """
    popular = await live_reads.top(redis, keys, None, TREND_POOL)
    ids = [text(m) for m, _ in popular]
    metas = [decode_item_meta(raw) for raw in await live_reads.metas(redis, keys, ids)]
    live = [(i, float(s), m) for i, (_, s), m in zip(ids, popular, metas, strict=True) if m is not None]
    top_score = live[0][1] if live else 1.0

    def entry(item_id: str, meta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"item_id": item_id, "title": meta.get("t") or item_id, "categories": meta.get("c") or [],
                "price": _num(meta.get("p"), 2), **extra}

    top = [entry(i, m, share=_num(s / top_score, 3)) for i, s, m in live[:n]]
    trending: list[dict[str, Any]] = []
    if version is not None and live:
        arrays = await model_cache.get(version)
        n_model = len(arrays.popularity)
        model_rank = np.empty(n_model, dtype=np.int64)
        model_rank[np.argsort(-arrays.popularity, kind="stable")] = np.arange(n_model)
        pos = np.array([arrays.item_pos.get(i, -1) for i, _, _ in live], dtype=np.int64)
        before = np.where(pos >= 0, model_rank[np.maximum(pos, 0)], n_model)
        climb = before - np.arange(len(live))
        for k in np.lexsort((np.arange(len(live)), -climb))[:n]:
            if climb[k] <= 0:
                break
            item_id, _, meta = live[k]
            trending.append(entry(item_id, meta, rank=int(k) + 1, climb=int(climb[k]),
                                  new=bool(pos[k] < 0), was=int(before[k]) + 1 if pos[k] >= 0 else None))
    return {"top": top, "trending": trending}


async def overview(
    session: AsyncSession, redis: aioredis.Redis, keys: Keys, model_cache: ModelCache, cache: DashboardCache,
) -> dict[str, Any]:
    """Everything the page shows, as one JSON-safe dict."""
    version, meta = await runs_service.current_version(redis, keys)
    model = await model_section(session, version, meta)
    return {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "events": await events_per_day(session),
        "model": model,
        "earned": await earned(redis, keys),
        "propensity": await propensity_distribution(redis, keys, version, meta, cache),
        "value": await value_card.value_distribution(redis, keys, version, meta, cache),
        "popular": await top_items(redis, keys, model_cache, version),
        "campaigns": {**await webhook_health.overview(session), "targets": webhook_health.export_targets(meta)},
        "experiments": await experiments_panel.running(session),
    }


async def try_user(recommender: RecommendService, redis: aioredis.Redis, keys: Keys, user_id: str,
                   n: int = 8) -> dict[str, Any]:
    """What the API would answer for `user_id`: recommendations with reasons, and purchase propensity."""
    recs = await recommender.for_user(user_id, Query(n=n))
    try:
        score = await propensity_service.user_score(redis, keys, user_id, HISTOGRAM_TARGET)
        propensity: dict[str, Any] | None = score.model_dump()
        note = None
    except ModelNotReady as exc:
        propensity, note = None, str(exc.detail)
    return {"user_id": user_id, "recommendations": recs.model_dump(), "propensity": propensity,
            "propensity_note": note}
