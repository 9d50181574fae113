from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from app.auth.deps import require
from app.db import SessionDep
from app.http import NOT_FOUND
from app.webhooks import service
from app.webhooks.schemas import DeliveryList, WebhookCreated, WebhookIn, WebhookList, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(require("admin"))])
IdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("", response_model=WebhookCreated, status_code=201)
async def create_webhook(body: WebhookIn, request: Request, session: SessionDep) -> WebhookCreated:
    """Register an endpoint. The URL must be http(s) and, unless SHOPMIND_WEBHOOK_ALLOW_PRIVATE, resolve to
    public addresses only (checked now, without connecting, and again before every delivery). The
    signing secret is returned here once."""
    created = await service.create_webhook(session, body, request.app.state.settings.webhook_allow_private)
    await session.commit()
    return created


@router.get("", response_model=WebhookList)
async def list_webhooks(session: SessionDep) -> WebhookList:
    """Every endpoint with its health: consecutive failures, and when it was disabled for them."""
    return WebhookList(webhooks=await service.list_webhooks(session))


@router.delete("/{webhook_id}", status_code=204, responses=NOT_FOUND)
async def delete_webhook(webhook_id: IdPath, session: SessionDep) -> Response:
    """Remove an endpoint and its deliveries, pending ones included."""
    await service.delete_webhook(session, webhook_id)
    await session.commit()
    return Response(status_code=204)


@router.post("/{webhook_id}/enable", response_model=WebhookOut, responses=NOT_FOUND)
async def enable_webhook(webhook_id: IdPath, session: SessionDep) -> WebhookOut:
    """Re-enable an endpoint disabled after SHOPMIND_WEBHOOK_DISABLE_AFTER_FAILURES failures; its pending
    deliveries are retried at once."""
    out = await service.enable_webhook(session, webhook_id)
    await session.commit()
    return out


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList, responses=NOT_FOUND)
async def list_deliveries(
    webhook_id: IdPath, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first.")] = 100,
) -> DeliveryList:
    """The latest deliveries to this endpoint: status, attempts, the last HTTP status and error."""
    return DeliveryList(deliveries=await service.deliveries(session, webhook_id, limit))
