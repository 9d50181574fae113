"""Webhook endpoints (Postgres rows) and the outbox: `enqueue` inserts the deliveries of one fact in
the caller's transaction, so the fact and its deliveries commit or vanish together."""

from __future__ import annotations

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.errors import NotFound, ValidationFailed
from app.triggers.kinds import ALL_EVENTS
from app.webhooks import signing, urls
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.schemas import DeliveryOut, WebhookCreated, WebhookIn, WebhookOut


class WebhookNotFound(NotFound):
    code = "WebhookNotFound"


def _out(row: Webhook) -> WebhookOut:
    return WebhookOut(
        id=row.id, url=row.url, events=row.events, enabled=row.disabled_at is None, created_at=row.created_at,
        consecutive_failures=row.consecutive_failures, disabled_at=row.disabled_at,
        last_success_at=row.last_success_at, last_failure_at=row.last_failure_at,
    )


async def create_webhook(session: AsyncSession, body: WebhookIn, allow_private: bool) -> WebhookCreated:
    try:
        await urls.check(body.url, allow_private)
    except urls.UnsafeURL as exc:
        raise ValidationFailed([{"loc": ["body", "url"], "msg": str(exc), "type": "unsafe_url"}]) from None
    row = Webhook(url=body.url, events=body.events, secret=body.secret or signing.new_secret())
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return WebhookCreated(**_out(row).model_dump(), secret=row.secret)


async def list_webhooks(session: AsyncSession) -> list[WebhookOut]:
    rows = await session.scalars(select(Webhook).order_by(Webhook.id))
    return [_out(r) for r in rows]


async def delete_webhook(session: AsyncSession, webhook_id: int) -> None:
    """Its deliveries go with it (ON DELETE CASCADE), pending ones included."""
    gone = await session.execute(delete(Webhook).where(Webhook.id == webhook_id).returning(Webhook.id))
    if gone.first() is None:
        raise WebhookNotFound(f"No webhook {webhook_id}.")


async def enable_webhook(session: AsyncSession, webhook_id: int) -> WebhookOut:
    """Back in service after it was disabled; its deliveries still pending are due at once."""
    row = (await session.execute(
        update(Webhook).where(Webhook.id == webhook_id)
        .values(disabled_at=None, consecutive_failures=0).returning(Webhook)
    )).scalar_one_or_none()
    if row is None:
        raise WebhookNotFound(f"No webhook {webhook_id}.")
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == "pending")
        .values(next_attempt_at=text("now()"))
    )
    return _out(row)


async def deliveries(session: AsyncSession, webhook_id: int, limit: int) -> list[DeliveryOut]:
    if await session.get(Webhook, webhook_id) is None:
        raise WebhookNotFound(f"No webhook {webhook_id}.")
    rows = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc()).limit(limit)
    )
    return [
        DeliveryOut(
            delivery_id=r.delivery_id, event=r.event, user_id=r.user_id, status=r.status, attempts=r.attempts,
            last_status=r.last_status, last_error=r.last_error, created_at=r.created_at,
            next_attempt_at=r.next_attempt_at if r.status == "pending" else None, delivered_at=r.delivered_at,
        )
        for r in rows
    ]


_ENQUEUE = text("""
INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, user_id, payload)
SELECT gen_random_uuid()::text, w.id, CAST(:event AS text), CAST(:user_id AS text), CAST(:payload AS jsonb)
FROM webhooks w
WHERE w.disabled_at IS NULL AND w.events && ARRAY[CAST(:event AS text), CAST(:all AS text)]
""")


async def enqueue(conn: AsyncConnection | AsyncSession, event: str, user_id: str | None, payload: str) -> int:
    """One delivery per enabled endpoint subscribed to `event`, in the caller's transaction.
    `payload`: the JSON body without its `delivery_id` (added per endpoint at send time)."""
    result = await conn.execute(_ENQUEUE, {"event": event, "user_id": user_id, "payload": payload, "all": ALL_EVENTS})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def erase_user(session: AsyncSession, user_id: str) -> None:
    """A shopper's erasure removes their deliveries, sent or not: the bodies carry their data."""
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.user_id == user_id))
