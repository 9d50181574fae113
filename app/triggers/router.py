from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from app.auth.deps import require
from app.db import SessionDep
from app.http import NOT_FOUND
from app.triggers import service
from app.triggers.schemas import TRIGGER_NAME, TriggerIn, TriggerList, TriggerOut

router = APIRouter(prefix="/v1/triggers", tags=["triggers"], dependencies=[Depends(require("admin"))])
NamePath = Annotated[str, Path(pattern=TRIGGER_NAME, description="1-64 of A-Z a-z 0-9 _ . : -")]


@router.put("/{name}", response_model=TriggerOut)
async def put_trigger(name: NamePath, body: TriggerIn, session: SessionDep) -> TriggerOut:
    """Create or replace a trigger. It arms on behaviour ingested from now on (never on the past), and
    each firing is delivered to the webhooks subscribed to its kind."""
    out = await service.put_trigger(session, name, body)
    await session.commit()
    return out


@router.get("", response_model=TriggerList)
async def list_triggers(session: SessionDep) -> TriggerList:
    return TriggerList(triggers=await service.list_triggers(session))


@router.get("/{name}", response_model=TriggerOut, responses=NOT_FOUND)
async def get_trigger(name: NamePath, session: SessionDep) -> TriggerOut:
    return await service.get_trigger(session, name)


@router.delete("/{name}", status_code=204, responses=NOT_FOUND)
async def delete_trigger(name: NamePath, session: SessionDep) -> Response:
    await service.delete_trigger(session, name)
    await session.commit()
    return Response(status_code=204)
