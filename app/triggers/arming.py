"""Arming and cancelling triggers inside ingest's transaction: a few set-based statements per batch.

Row locks are taken in one order everywhere, so concurrent batches never deadlock: each arming
statement inserts its rows sorted by (trigger, shopper, subject), the statements run in a fixed order
and touch disjoint rows (a trigger has one kind), and cancelling skips rows it would wait for.

`statements` turns a batch into at most three statements over arrays of the batch's relevant events
(carts, purchases, views), each joined to the triggers table; the batch's rows are only sorted into
those arrays, never queried one by one. With no trigger of a kind defined, its statements are not
sent; with none at all (`active.kinds` empty), ingest runs none. Pending rows commit with the events
that caused them, so a crash or a Redis loss drops no deadline.

Only behaviour recent enough to matter arms anything: a cart whose deadline has already passed when
it is ingested (an import, a backfill) is ignored, as is a view of an out-of-stock item older than
RECENT_INTEREST.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.events.validate import EventRow

Statement = tuple[str, tuple[Any, ...]]

_TS = "timestamptz '2000-01-01 00:00:00+00' + us * interval '1 microsecond'"  # EventRow.ts, see its docstring
_DELAY = "t.delay_seconds * interval '1 second'"
RECENT_INTEREST = "30 days"

_ARM_CART = f"""
INSERT INTO trigger_pending AS p (trigger_name, user_id, subject, started_at, last_at, due_at, item_ids)
SELECT t.name, c.u, '', min(c.ts), max(c.ts), min(c.ts) + {_DELAY}, (array_agg(DISTINCT c.i))[1:50]
FROM (SELECT u, i, {_TS} AS ts FROM unnest(%s::text[], %s::text[], %s::int8[]) AS x(u, i, us)) AS c
JOIN triggers t ON t.kind = 'cart_abandoned'
WHERE c.ts + {_DELAY} > now()
GROUP BY t.name, t.delay_seconds, c.u
ORDER BY t.name, c.u
ON CONFLICT (trigger_name, user_id, subject) DO UPDATE
SET item_ids = (ARRAY(SELECT DISTINCT x FROM unnest(p.item_ids || excluded.item_ids) AS x ORDER BY x))[1:50],
    last_at = greatest(p.last_at, excluded.last_at)
WHERE NOT p.item_ids @> excluded.item_ids  -- the same items carted again: no new row version
"""

# A purchase cancels both abandonment kinds; a cart cancels browse abandonment. Only behaviour at or
# after the arming counts: a purchase ingested late but made before the cart does not cancel it.
# SKIP LOCKED: this is housekeeping, never a wait. A row another batch or the dispatcher holds stays,
# and the dispatcher's own check before firing (a purchase or cart since the arming) drops it then;
# waiting here would let two batches arming and cancelling each other's shoppers deadlock.
_CANCEL = f"""
DELETE FROM trigger_pending
WHERE (trigger_name, user_id, subject) IN (
    SELECT p.trigger_name, p.user_id, p.subject
    FROM (SELECT u, max({_TS}) AS acted, max({_TS}) FILTER (WHERE bought) AS bought
          FROM unnest(%s::text[], %s::int8[], %s::bool[]) AS x(u, us, bought) GROUP BY u) AS b
    JOIN trigger_pending p ON p.user_id = b.u
    JOIN triggers t ON t.name = p.trigger_name
    WHERE (t.kind = 'browse_abandoned' AND b.acted >= p.started_at)
       OR (t.kind = 'cart_abandoned' AND b.bought >= p.started_at)
    FOR UPDATE OF p SKIP LOCKED)
"""

_MIN_VIEWS = "coalesce((t.conditions->>'min_views')::int, 3)"
_ARM_BROWSE = f"""
INSERT INTO trigger_pending AS p (trigger_name, user_id, subject, started_at, last_at, due_at, item_ids, views)
SELECT t.name, v.u, cat, min(v.ts), max(v.ts),
       CASE WHEN count(*) >= {_MIN_VIEWS} THEN max(v.ts) + {_DELAY} END,
       (array_agg(DISTINCT v.i))[1:20], count(*)
FROM (SELECT u, i, {_TS} AS ts FROM unnest(%s::text[], %s::text[], %s::int8[]) AS x(u, i, us)) AS v
JOIN items it ON it.item_id = v.i
CROSS JOIN LATERAL unnest(it.categories) AS cat
JOIN triggers t ON t.kind = 'browse_abandoned'
  AND (t.conditions->>'category' IS NULL OR t.conditions->>'category' = cat)
WHERE v.ts + {_DELAY} > now()
GROUP BY t.name, t.delay_seconds, t.conditions, v.u, cat
ORDER BY t.name, v.u, cat
ON CONFLICT (trigger_name, user_id, subject) DO UPDATE
SET views = p.views + excluded.views,
    last_at = greatest(p.last_at, excluded.last_at),
    item_ids = (ARRAY(SELECT DISTINCT x FROM unnest(p.item_ids || excluded.item_ids) AS x ORDER BY x))[1:20],
    due_at = coalesce(p.due_at, (
        SELECT greatest(p.last_at, excluded.last_at) + {_DELAY} FROM triggers t
        WHERE t.name = p.trigger_name AND p.views + excluded.views >= {_MIN_VIEWS}))
"""

_ARM_STOCK = f"""
INSERT INTO trigger_pending AS p (trigger_name, user_id, subject, started_at, last_at, due_at, item_ids, views)
SELECT t.name, v.u, v.i, min(v.ts), max(v.ts), NULL, ARRAY[v.i], count(*)
FROM (SELECT u, i, {_TS} AS ts FROM unnest(%s::text[], %s::text[], %s::int8[]) AS x(u, i, us)) AS v
JOIN items it ON it.item_id = v.i AND NOT it.available AND it.deleted_at IS NULL
JOIN triggers t ON t.kind = 'back_in_stock'
WHERE v.ts > now() - interval '{RECENT_INTEREST}'
GROUP BY t.name, v.u, v.i
ORDER BY t.name, v.u, v.i
ON CONFLICT (trigger_name, user_id, subject) DO UPDATE
SET views = p.views + excluded.views, last_at = greatest(p.last_at, excluded.last_at)
"""

RESTOCK = """
UPDATE trigger_pending p SET due_at = now() + t.delay_seconds * interval '1 second'
FROM triggers t
WHERE t.name = p.trigger_name AND (p.trigger_name, p.user_id, p.subject) IN (
    SELECT q.trigger_name, q.user_id, q.subject FROM trigger_pending q JOIN triggers k ON k.name = q.trigger_name
    WHERE k.kind = 'back_in_stock' AND q.due_at IS NULL AND q.subject = ANY(:item_ids)
    ORDER BY 1, 2, 3
    FOR UPDATE OF q)
"""
"""Items upserted as available: the shoppers who wanted them while they were out of stock become due."""


def _columns(rows: Sequence[EventRow]) -> tuple[list[str], list[str | None], list[int]]:
    return [r.user_id for r in rows], [r.item_id for r in rows], [r.ts for r in rows]


def statements(kinds: frozenset[str], rows: Sequence[EventRow]) -> list[Statement]:
    """What to run after the batch's events are written, in the same transaction (arm, then cancel:
    a cart and a later purchase in one batch leave nothing armed)."""
    if not kinds:
        return []
    out: list[Statement] = []
    carts = [r for r in rows if r.type == "add_to_cart" and r.item_id is not None]
    views = [r for r in rows if r.type == "view" and r.item_id is not None]
    if "cart_abandoned" in kinds and carts:
        out.append((_ARM_CART, _columns(carts)))
    if "browse_abandoned" in kinds and views:
        out.append((_ARM_BROWSE, _columns(views)))
    if "back_in_stock" in kinds and (views or carts):
        out.append((_ARM_STOCK, _columns(views + carts)))
    if kinds & {"cart_abandoned", "browse_abandoned"}:
        cancels = [r for r in rows if r.type == "purchase" or (r.type == "add_to_cart" and "browse_abandoned" in kinds)]
        if cancels:
            out.append((_CANCEL, ([r.user_id for r in cancels], [r.ts for r in cancels],
                                  [r.type == "purchase" for r in cancels])))
    return out
