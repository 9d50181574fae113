"""Firing due triggers: claim due pending rows, decide which fire, write their deliveries to the outbox.

One transaction per batch claims rows (`FOR UPDATE SKIP LOCKED`, so several dispatchers share the
work), enqueues one delivery per subscribed endpoint for each firing, records the firing for the
cooldown and deletes the rows. A dispatcher dying anywhere in between rolls it all back: the rows are
due again for the next one, and no delivery exists without its firing or the other way round.

A row fires only if, at that moment, the shopper still exists, was not erased after the row was armed,
has not bought since (abandonment kinds; a cart also ends browsing), still has something in the cart
(cart abandonment: the items carted since, less those removed since), and has not had this trigger
fire within its cooldown. Those are index lookups for the claimed shoppers, not scans of the event log.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import AppError
from app.placements import apply as placements
from app.propensity import service as propensity_service
from app.recommend.degraded import DegradedPopularity
from app.recommend.schemas import Recommendations
from app.recommend.service import Query
from app.webhooks import service as webhooks

log = logging.getLogger(__name__)

BATCH = 100

_CLAIM = text("""
SELECT p.trigger_name, p.user_id, p.subject, t.kind, t.delay_seconds, t.conditions, t.recommendations,
       u.attributes,
       CASE WHEN t.kind <> 'cart_abandoned' THEN p.item_ids ELSE ARRAY(
           -- what is still in the cart: items whose last cart event since the arming is an add
           SELECT c.item_id FROM (
               SELECT DISTINCT ON (ev.item_id) ev.item_id, ev.type FROM events ev
               WHERE ev.user_id = p.user_id AND ev.ts >= p.started_at
                 AND ev.type IN ('add_to_cart', 'remove_from_cart') AND ev.item_id IS NOT NULL
               ORDER BY ev.item_id, ev.ts DESC, ev.id DESC) AS c
           WHERE c.type = 'add_to_cart' ORDER BY c.item_id LIMIT 50) END AS item_ids,
       u.user_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM user_erasures e WHERE e.user_id = p.user_id AND e.erased_at >= p.started_at)
       AND NOT (t.kind IN ('cart_abandoned', 'browse_abandoned') AND EXISTS (
           SELECT 1 FROM events ev WHERE ev.user_id = p.user_id AND ev.ts >= p.started_at
             AND (ev.type = 'purchase' OR (t.kind = 'browse_abandoned' AND ev.type = 'add_to_cart'))))
       AND NOT EXISTS (SELECT 1 FROM trigger_fires f WHERE f.trigger_name = p.trigger_name
           AND f.user_id = p.user_id AND f.fired_at > now() - t.cooldown_seconds * interval '1 second')
       AS fires
FROM trigger_pending p
JOIN triggers t ON t.name = p.trigger_name
LEFT JOIN users u ON u.user_id = p.user_id
WHERE p.due_at <= now()
ORDER BY p.due_at
LIMIT :batch
FOR UPDATE OF p SKIP LOCKED
""")
_ITEMS = text("SELECT item_id, title, price, categories FROM items WHERE item_id = ANY(:ids)")
_DONE = text("""
DELETE FROM trigger_pending p
USING unnest(CAST(:names AS text[]), CAST(:users AS text[]), CAST(:subjects AS text[])) AS d(n, u, s)
WHERE p.trigger_name = d.n AND p.user_id = d.u AND p.subject = d.s
""")
_FIRED = text("""
INSERT INTO trigger_fires (trigger_name, user_id, fired_at)
SELECT n, u, now() FROM unnest(CAST(:names AS text[]), CAST(:users AS text[])) AS f(n, u)
ON CONFLICT (trigger_name, user_id) DO UPDATE SET fired_at = excluded.fired_at
""")


@dataclass(frozen=True)
class Serving:
    """What building a payload reads: the API's own recommendation and placement services (`app.state`
    in the API; the dispatcher builds the same objects), and the propensity targets to report."""

    state: Any
    targets: list[str]


async def fire_due(engine: AsyncEngine, serving: Serving) -> int:
    """Fire one batch of due rows; returns how many rows were settled (fired or dropped)."""
    async with engine.begin() as conn:
        claimed = (await conn.execute(_CLAIM, {"batch": BATCH})).mappings().all()
        if not claimed:
            return 0
        firing: dict[tuple[str, str], Any] = {}
        for row in claimed:
            if row["fires"] and (row["item_ids"] or row["kind"] != "cart_abandoned"):  # an emptied cart is no cart
                firing.setdefault((row["trigger_name"], row["user_id"]), row)  # once per shopper and trigger
        ids = sorted({i for row in firing.values() for i in row["item_ids"]})
        items = {r.item_id: r for r in (await conn.execute(_ITEMS, {"ids": ids})).all()} if ids else {}
        for row in firing.values():
            payload = await _payload(row, items, serving)
            await webhooks.enqueue(conn, row["kind"], row["user_id"], json.dumps(payload, separators=(",", ":")))
        if firing:
            names, users = zip(*firing, strict=True)
            await conn.execute(_FIRED, {"names": list(names), "users": list(users)})
        await conn.execute(_DONE, {"names": [r["trigger_name"] for r in claimed],
                                   "users": [r["user_id"] for r in claimed],
                                   "subjects": [r["subject"] for r in claimed]})
    if firing:
        log.info("triggers.fired", extra={"fired": len(firing), "settled": len(claimed)})
    return len(claimed)


async def _recommendations(state: Any, placement: str | None, user_id: str, q: Query) -> Recommendations:
    if placement:
        try:
            return await placements.for_user(state, placement, user_id, q, {"n"})
        except AppError as exc:  # deleted or changed since the trigger was written: plain recommendations
            log.warning("triggers.placement_unusable", extra={"placement": placement, "error": str(exc.detail)})
    recs: Recommendations = await state.recommender.for_user(user_id, q)
    return recs


async def _payload(row: Any, items: dict[str, Any], serving: Serving) -> dict[str, Any]:
    user_id: str = row["user_id"]
    spec: dict[str, Any] = row["recommendations"] or {}
    q = Query(n=int(spec.get("n", 5)))
    placement = spec.get("placement")
    state = serving.state
    propensity: dict[str, Any] = {}
    try:
        recs = await _recommendations(state, placement, user_id, q)
        for target in serving.targets:
            try:
                score = await propensity_service.user_score(state.redis, state.keys, user_id, target)
            except AppError:  # no model (yet) for this target: the payload says so by leaving it out
                continue
            propensity[target] = {"probability": score.probability, "percentile": score.percentile,
                                  "tier": score.tier, "horizon_days": score.horizon_days}
    except (RedisError, OSError) as exc:
        # Redis away: the reminder still goes, with what the API serves then (Postgres popularity,
        # `strategy: degraded_popularity`) and no propensity; waiting could outlast the moment.
        log.warning("triggers.redis_unavailable", extra={"error": type(exc).__name__})
        fallback: DegradedPopularity = state.degraded_popularity
        recs = await fallback.recommend(q.n, None, True, set(), None, None, user_id=user_id, exclude_seen=False)
    caused = []
    for item_id in row["item_ids"]:
        item = items.get(item_id)
        caused.append({"item_id": item_id, "title": item.title if item else None,
                       "price": item.price if item else None, "categories": list(item.categories) if item else []})
    payload: dict[str, Any] = {
        "event": row["kind"],
        "created_at": datetime.now(UTC).isoformat(),
        "trigger": {"name": row["trigger_name"], "kind": row["kind"], "delay_seconds": row["delay_seconds"]},
        "user": {"user_id": user_id, "attributes": row["attributes"] or {}},
        "items": caused,
        "recommendations": recs.model_dump(mode="json"),
        "propensity": propensity,
    }
    if row["kind"] == "browse_abandoned":
        payload["category"] = row["subject"]
    if row["kind"] == "propensity_crossed":
        payload["target"] = row["subject"]
    return payload
