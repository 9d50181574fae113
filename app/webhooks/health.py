"""What the dashboard shows of campaigns: each endpoint's health and each trigger's recent firings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_ENDPOINTS = text("""
SELECT w.id, w.url, w.events, w.disabled_at, w.consecutive_failures, w.last_success_at, w.last_failure_at,
       count(*) FILTER (WHERE d.status = 'pending') AS pending,
       count(*) FILTER (WHERE d.status = 'delivered' AND d.created_at > now() - interval '1 day') AS delivered_day,
       count(*) FILTER (WHERE d.status = 'failed' AND d.created_at > now() - interval '1 day') AS failed_day,
       (array_agg(d.last_error ORDER BY d.id DESC) FILTER (WHERE d.last_error IS NOT NULL))[1] AS last_error
FROM webhooks w LEFT JOIN webhook_deliveries d ON d.webhook_id = w.id
GROUP BY w.id ORDER BY w.id
""")
# one delivery per firing and endpoint: the firings of a day are its distinct (trigger, shopper) pairs
_FIRINGS = text("""
SELECT t.name, t.kind, t.delay_seconds, d.day, d.fired
FROM triggers t
LEFT JOIN LATERAL (
    SELECT date_trunc('day', created_at) AS day,
           count(DISTINCT (payload->'trigger'->>'name', user_id)) AS fired
    FROM webhook_deliveries
    WHERE payload->'trigger'->>'name' = t.name AND created_at > now() - interval '7 days'
    GROUP BY 1) AS d ON true
ORDER BY t.name, d.day
""")


def _when(value: Any) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else None


async def overview(session: AsyncSession) -> dict[str, Any]:
    endpoints = [
        {"id": r.id, "url": r.url, "events": list(r.events), "enabled": r.disabled_at is None,
         "disabled_at": _when(r.disabled_at), "consecutive_failures": r.consecutive_failures,
         "last_success_at": _when(r.last_success_at), "last_failure_at": _when(r.last_failure_at),
         "pending": r.pending, "delivered_day": r.delivered_day, "failed_day": r.failed_day,
         "last_error": r.last_error}
        for r in await session.execute(_ENDPOINTS)
    ]
    triggers: dict[str, dict[str, Any]] = {}
    for r in await session.execute(_FIRINGS):
        entry = triggers.setdefault(r.name, {"name": r.name, "kind": r.kind, "delay_seconds": r.delay_seconds,
                                             "per_day": [], "fired_7d": 0})
        if r.day is not None:
            entry["per_day"].append([r.day.strftime("%Y-%m-%d"), r.fired])
            entry["fired_7d"] += r.fired
    return {"endpoints": endpoints, "triggers": list(triggers.values())}


def export_targets(meta: dict[str, str]) -> list[str]:
    """The targets the serving version scored (the export form's choices), purchase first."""
    targets = [t for t in meta.get("propensity_targets", "").split(",") if t]
    return targets or ["purchase", "churn"]
