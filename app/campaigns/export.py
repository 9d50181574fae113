"""Streaming a campaign export: the audience a page at a time, each page's shoppers recommended with
bounded concurrency, their items' titles and prices in one Redis read per page, rows written as they
are ready. Memory holds one page (PAGE shoppers), whatever the audience's size.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from app.campaigns.schemas import ExportIn, ItemAudience, ListedAudience, TargetAudience
from app.common.paging import ranked_page
from app.placements import apply as placements
from app.propensity import item_audience
from app.propensity import service as propensity_service
from app.recommend.schemas import Recommendations
from app.recommend.service import Query
from app.store import live_reads
from app.store.codec import decode_item_meta

PAGE = 500
CONCURRENCY = 16
"""Recommendation calls in flight at once: well under the Redis client's connection pool."""

Member = tuple[str, float, str]  # user_id, probability, tier


async def check(state: Any, body: ExportIn) -> str:
    """Before the first byte is sent (a failure mid-stream cannot change the status): the target is
    valid, its model exists, an audience's item exists, and the placement (if any) serves users.
    Returns the target."""
    target = propensity_service.parse_target(body.audience.target)
    if isinstance(body.audience, ItemAudience):  # ItemNotFound for an unknown item, as the GET route
        await _item_page(state, body.audience, 1, None)
    await propensity_service.audience(state.redis, state.keys, target, 0.0, 1, None)  # ModelNotReady if none
    if body.placement is not None:
        await state.placements.resolve(body.placement, ("user",), None)
    return target


async def _scored(state: Any, user_ids: list[str], target: str) -> list[Member]:
    out = await propensity_service.batch_scores(state.redis, state.keys, user_ids, target)
    return [(s.user_id, s.probability, s.tier) for s in out.scores]


async def _item_page(state: Any, audience: ItemAudience, n: int, cursor: str | None) -> tuple[list[str], str | None]:
    page = await item_audience.item_audience(state.redis, state.keys, state.model_cache, audience.item_id, n,
                                             audience.min_score, audience.include_buyers, cursor)
    return [u.user_id for u in page.users], page.next_cursor


async def _audience(
    state: Any, audience: TargetAudience | ListedAudience | ItemAudience, target: str
) -> AsyncIterator[list[Member]]:
    """Pages of (shopper, probability, tier): the listed shoppers in order, the item's audience, or the
    target's ranking."""
    if isinstance(audience, ListedAudience):
        for start in range(0, len(audience.user_ids), PAGE):
            yield await _scored(state, audience.user_ids[start:start + PAGE], target)
        return
    if isinstance(audience, ItemAudience):
        sent, item_cursor = 0, None
        while sent < audience.limit:
            user_ids, item_cursor = await _item_page(state, audience, min(PAGE, audience.limit - sent), item_cursor)
            if user_ids:
                sent += len(user_ids)
                yield await _scored(state, user_ids, target)
            if item_cursor is None:
                return
        return
    redis: aioredis.Redis = state.redis
    version = (await propensity_service.audience(redis, state.keys, target, 0.0, 1, None)).model_version
    sent, cursor = 0, None
    while sent < audience.limit:
        version, ranked, cursor = await ranked_page(
            redis, state.keys, version, f"aud:{target}", PAGE, cursor, audience.min_probability
        )
        page = await _scored(state, [u for u, _ in ranked], target) if ranked else []
        if audience.tier is not None:
            page = [m for m in page if m[2] == audience.tier]
        page = page[:audience.limit - sent]
        sent += len(page)
        if page:
            yield page
        if cursor is None:
            return


async def _recommend(state: Any, body: ExportIn, user_id: str, gate: asyncio.Semaphore) -> Recommendations:
    q = Query(n=body.n_items)
    async with gate:
        if body.placement is not None:
            return await placements.for_user(state, body.placement, user_id, q, {"n"})
        recs: Recommendations = await state.recommender.for_user(user_id, q)
        return recs


async def rows(state: Any, body: ExportIn, target: str) -> AsyncIterator[dict[str, Any]]:
    gate = asyncio.Semaphore(CONCURRENCY)
    async for page in _audience(state, body.audience, target):
        recs = await asyncio.gather(*(_recommend(state, body, user_id, gate) for user_id, _, _ in page))
        ids = sorted({i.item_id for r in recs for i in r.items})
        metas = dict(zip(ids, await live_reads.metas(state.redis, state.keys, ids), strict=True))
        for (user_id, probability, tier), rec in zip(page, recs, strict=True):
            items = []
            for item in rec.items:
                meta = decode_item_meta(metas.get(item.item_id)) or {}
                items.append({"item_id": item.item_id, "title": meta.get("t"), "price": meta.get("p"),
                              "score": round(item.score, 6)})
            yield {"user_id": user_id, "probability": round(probability, 6), "tier": tier,
                   "recommendation_id": rec.recommendation_id, "items": items}


def csv_header(n_items: int) -> list[str]:
    head = ["user_id", "probability", "tier", "recommendation_id"]
    for k in range(1, n_items + 1):
        head += [f"item_{k}_id", f"item_{k}_title", f"item_{k}_price"]
    return head


async def stream(state: Any, body: ExportIn, target: str) -> AsyncIterator[bytes]:
    """The export's bytes, one chunk per shopper: JSON lines, or CSV (after a first chunk holding the
    header) with n_items column triples, blank past the shopper's last item."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if body.format == "csv":
        writer.writerow(csv_header(body.n_items))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    async for row in rows(state, body, target):
        if body.format == "jsonl":
            yield (json.dumps(row, separators=(",", ":")) + "\n").encode()
            continue
        cells: list[Any] = [row["user_id"], row["probability"], row["tier"], row["recommendation_id"]]
        for k in range(body.n_items):
            item = row["items"][k] if k < len(row["items"]) else {}
            price = item.get("price")
            cells += [item.get("item_id", ""), item.get("title") or "", "" if price is None else price]
        writer.writerow(cells)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


