"""Sending the outbox: claim due deliveries, POST them signed, record the outcome and the next try.

Claiming moves a row's `next_attempt_at` past the attempt's time limit (the lease) and commits before
anything is sent, so no transaction stays open across the network and a dispatcher killed mid-send
leaves the row due again once the lease runs out: delivered after a restart (at least once; receivers
de-duplicate by `delivery_id`). Rows are claimed with `FOR UPDATE SKIP LOCKED`: dispatchers running
side by side take different rows.

Retries: 5xx, 408, 429, timeouts, refused or failed connections and addresses refused at send time,
after `backoff · 2^(attempt-1)` seconds (capped at an hour) times a random factor in [0.5, 1] so a
receiver coming back is not hit by every delivery at once, until SHOPMIND_WEBHOOK_RETRY_HOURS after
the delivery was created. Other answers (4xx, redirects) fail it at once: retrying will not change them.
An endpoint failing SHOPMIND_WEBHOOK_DISABLE_AFTER_FAILURES attempts in a row is disabled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from app.webhooks import signing, urls

log = logging.getLogger(__name__)

BATCH = 50
MAX_BACKOFF_SECONDS = 3600.0
USER_AGENT = "Shopmind-Webhooks/1"

_CLAIM = text("""
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + :lease * interval '1 second'
FROM webhooks w
WHERE w.id = d.webhook_id AND d.id IN (
    SELECT d2.id FROM webhook_deliveries d2 JOIN webhooks w2 ON w2.id = d2.webhook_id
    WHERE d2.status = 'pending' AND d2.next_attempt_at <= now() AND w2.disabled_at IS NULL
    ORDER BY d2.next_attempt_at
    LIMIT :batch
    FOR UPDATE OF d2 SKIP LOCKED)
RETURNING d.id, d.delivery_id, d.webhook_id, d.attempts, d.payload, w.url, w.secret
""")
_DELIVERED = text("""
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_status = :status, last_error = NULL
WHERE id = :id
""")
_HEALTHY = text("UPDATE webhooks SET consecutive_failures = 0, last_success_at = now() WHERE id = :webhook_id")
_FAILED = text("""
UPDATE webhook_deliveries
SET status = CASE WHEN :final OR created_at + :retry_hours * interval '1 hour' < now() + :delay * interval '1 second'
                  THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + :delay * interval '1 second', last_status = :status, last_error = :error
WHERE id = :id
""")
_UNHEALTHY = text("""
UPDATE webhooks
SET consecutive_failures = consecutive_failures + 1, last_failure_at = now(),
    disabled_at = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= :limit THEN now() ELSE disabled_at END
WHERE id = :webhook_id
""")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry: bool = True


def lease_seconds(settings: Settings) -> float:
    """Longer than one attempt may take, so a live dispatcher's row is never claimed twice."""
    return settings.webhook_timeout_seconds * 1.5 + 2.0


def backoff(attempt: int, base: float) -> float:
    return min(base * 2.0 ** max(attempt - 1, 0), MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)


def body_of(delivery_id: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps({"delivery_id": delivery_id, **payload})


async def send(client: httpx.AsyncClient, url: str, secret: str, body: bytes, settings: Settings) -> Outcome:
    try:
        target = await urls.check(url, settings.webhook_allow_private)
    except urls.UnsafeURL as exc:
        return Outcome(False, error=f"refused: {exc}")
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               signing.HEADER: signing.signature(secret, int(time.time()), body)}
    if target.host_header:
        headers["host"] = target.host_header
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    try:
        response = await asyncio.wait_for(
            client.post(target.url, content=body, headers=headers, extensions=extensions),
            settings.webhook_timeout_seconds,
        )
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(False, error=f"timeout after {settings.webhook_timeout_seconds:g} s")
    except httpx.ConnectError as exc:
        return Outcome(False, error=f"connection failed: {exc or type(exc).__name__}")
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True, status)
    retry = status >= 500 or status in (408, 429)
    why = "redirects are not followed" if 300 <= status < 400 else response.reason_phrase
    return Outcome(False, status, f"HTTP {status} {why}".strip(), retry=retry)


async def deliver_due(engine: AsyncEngine, client: httpx.AsyncClient, settings: Settings) -> int:
    """Claim, send and record one batch of due deliveries; returns how many were attempted."""
    async with engine.begin() as conn:
        claimed = (await conn.execute(
            _CLAIM, {"lease": lease_seconds(settings), "batch": BATCH}
        )).mappings().all()
    if not claimed:
        return 0
    outcomes = await asyncio.gather(*(
        send(client, row["url"], row["secret"], body_of(row["delivery_id"], row["payload"]), settings)
        for row in claimed
    ))
    settled = sorted(zip(claimed, outcomes, strict=True), key=lambda pair: (pair[0]["webhook_id"], pair[0]["id"]))
    async with engine.begin() as conn:  # endpoints updated in id order: dispatchers side by side never deadlock
        for row, outcome in settled:
            ids = {"id": row["id"], "webhook_id": row["webhook_id"]}
            if outcome.ok:
                await conn.execute(_DELIVERED, {**ids, "status": outcome.status})
                await conn.execute(_HEALTHY, ids)
                continue
            await conn.execute(_FAILED, {
                **ids, "final": not outcome.retry, "delay": backoff(row["attempts"], settings.webhook_backoff_seconds),
                "retry_hours": settings.webhook_retry_hours, "status": outcome.status, "error": outcome.error,
            })
            await conn.execute(_UNHEALTHY, {**ids, "limit": settings.webhook_disable_after_failures})
    failed = sum(not o.ok for o in outcomes)
    log.info("webhooks.sent", extra={"attempted": len(claimed), "failed": failed})
    return len(claimed)
