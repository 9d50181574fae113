"""Trigger definitions (Postgres rows); arming and firing live in `arming` and `firing`."""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.placements.models import Placement
from app.triggers import active
from app.triggers.models import HighTier, Trigger, TriggerFire, TriggerPending
from app.triggers.schemas import ShopperCampaigns, TriggerIn, TriggerOut
from app.webhooks.models import WebhookDelivery


class TriggerNotFound(NotFound):
    code = "TriggerNotFound"


def _out(row: Trigger) -> TriggerOut:
    return TriggerOut.model_validate({
        "name": row.name, "kind": row.kind, "delay_seconds": row.delay_seconds,
        "cooldown_seconds": row.cooldown_seconds, "conditions": row.conditions,
        "recommendations": row.recommendations, "created_at": row.created_at, "updated_at": row.updated_at,
    })


async def _check_placement(session: AsyncSession, body: TriggerIn) -> None:
    name = body.recommendations.placement
    if name is None:
        return
    spec = await session.scalar(select(Placement.spec).where(Placement.name == name))
    if spec is None or spec.get("kind", "user") != "user":
        why = "no such placement" if spec is None else f"it is of kind `{spec.get('kind')}`, not `user`"
        raise ValidationFailed([{"loc": ["body", "recommendations", "placement"],
                                 "msg": f"Placement `{name}` cannot fill a trigger: {why}.", "type": "placement"}])


async def put_trigger(session: AsyncSession, name: str, body: TriggerIn) -> TriggerOut:
    """Create or replace. Replacing keeps the shoppers already armed (their deadline stays) and the
    cooldown memory, unless the kind changes: then both are dropped, they meant something else."""
    await _check_placement(session, body)
    previous = await session.scalar(select(Trigger.kind).where(Trigger.name == name).with_for_update())
    if previous is not None and previous != body.kind:
        await session.execute(delete(TriggerPending).where(TriggerPending.trigger_name == name))
        await session.execute(delete(TriggerFire).where(TriggerFire.trigger_name == name))
    values = {
        "kind": body.kind, "delay_seconds": body.delay_seconds, "cooldown_seconds": body.cooldown_seconds,
        "conditions": body.conditions, "recommendations": body.recommendations.model_dump(mode="json"),
    }
    stmt = insert(Trigger).values(name=name, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[Trigger.name], set_={**values, "updated_at": func.now()}
    ).returning(Trigger)
    row = (await session.execute(upsert)).scalar_one()
    active.forget()
    return _out(row)


async def get_trigger(session: AsyncSession, name: str) -> TriggerOut:
    row = await session.get(Trigger, name)
    if row is None:
        raise TriggerNotFound(f"No trigger `{name}`.")
    return _out(row)


async def list_triggers(session: AsyncSession) -> list[TriggerOut]:
    return [_out(r) for r in await session.scalars(select(Trigger).order_by(Trigger.name))]


async def delete_trigger(session: AsyncSession, name: str) -> None:
    """Its armed shoppers and cooldowns go with it (ON DELETE CASCADE); deliveries already made stay."""
    gone = await session.execute(delete(Trigger).where(Trigger.name == name).returning(Trigger.name))
    if gone.first() is None:
        raise TriggerNotFound(f"No trigger `{name}`.")
    active.forget()


async def erase_user(session: AsyncSession, user_id: str) -> None:
    """In the erasure's transaction (which holds the shopper's lock against ingest): nothing armed for
    them survives, and no cooldown or tier row keeps their id."""
    for model in (TriggerPending, TriggerFire, HighTier):
        await session.execute(delete(model).where(model.user_id == user_id))


_MERGE_PENDING = text("""
WITH moved AS (DELETE FROM trigger_pending WHERE user_id = :source RETURNING *)
INSERT INTO trigger_pending (trigger_name, user_id, subject, started_at, last_at, due_at, item_ids, views)
SELECT trigger_name, :target, subject, started_at, last_at, due_at, item_ids, views FROM moved
ORDER BY trigger_name, subject
ON CONFLICT (trigger_name, user_id, subject) DO UPDATE
SET started_at = least(trigger_pending.started_at, excluded.started_at),
    last_at = greatest(trigger_pending.last_at, excluded.last_at),
    due_at = least(trigger_pending.due_at, excluded.due_at),
    item_ids = ARRAY(SELECT DISTINCT x FROM unnest(trigger_pending.item_ids || excluded.item_ids) AS x ORDER BY x),
    views = trigger_pending.views + excluded.views
""")


async def merge_user(session: AsyncSession, user_id: str, from_user_id: str) -> None:
    """A merge (login after browsing anonymously) hands what was armed for the session to the known
    shopper, who has the address a reminder can reach; the merge holds both shoppers' locks."""
    await session.execute(_MERGE_PENDING, {"source": from_user_id, "target": user_id})


async def export_user(session: AsyncSession, user_id: str) -> ShopperCampaigns:
    """Everything erase_user (and the webhooks' own) removes, for the shopper's GDPR export."""
    pending = await session.scalars(select(TriggerPending).where(TriggerPending.user_id == user_id)
                                    .order_by(TriggerPending.trigger_name, TriggerPending.subject))
    fires = await session.scalars(select(TriggerFire).where(TriggerFire.user_id == user_id)
                                  .order_by(TriggerFire.trigger_name))
    tiers = await session.scalars(select(HighTier.target).where(HighTier.user_id == user_id).order_by(HighTier.target))
    deliveries = await session.scalars(select(WebhookDelivery).where(WebhookDelivery.user_id == user_id)
                                       .order_by(WebhookDelivery.id))
    return ShopperCampaigns(
        pending_triggers=[
            {"trigger": p.trigger_name, "subject": p.subject, "started_at": p.started_at.isoformat(),
             "due_at": p.due_at.isoformat() if p.due_at else None, "item_ids": p.item_ids, "views": p.views}
            for p in pending
        ],
        trigger_fires=[{"trigger": f.trigger_name, "fired_at": f.fired_at.isoformat()} for f in fires],
        high_tiers=list(tiers),
        webhook_deliveries=[
            {"delivery_id": d.delivery_id, "webhook_id": d.webhook_id, "event": d.event, "status": d.status,
             "created_at": d.created_at.isoformat(), "payload": d.payload}
            for d in deliveries
        ],
    )
