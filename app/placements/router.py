from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from redis.exceptions import RedisError

from app.auth.deps import require
from app.db import SessionDep
from app.fallback import note_redis_fallback
from app.http import NOT_FOUND
from app.placements import service
from app.placements.schemas import PLACEMENT_NAME, PlacementIn, PlacementList, PlacementOut

router = APIRouter(prefix="/v1/placements", tags=["placements"], dependencies=[Depends(require("admin"))])
NamePath = Annotated[str, Path(pattern=PLACEMENT_NAME, description="1-64 of A-Z a-z 0-9 _ . : -")]


async def _announce(request: Request) -> None:
    """After the commit. With Redis down the old epoch stays; serving is answering from Postgres
    popularity (no placements) until Redis returns, and the next write announces again."""
    try:
        await service.announce(request.app.state.redis, request.app.state.keys)
    except (RedisError, OSError):
        note_redis_fallback(request.app.state, "placements.announce")


@router.put("/{name}", response_model=PlacementOut)
async def put_placement(name: NamePath, body: PlacementIn, request: Request, session: SessionDep) -> PlacementOut:
    """Create or replace a placement. Pinned and excluded items must exist; rules apply at the next request."""
    out = await service.put_placement(session, name, body)
    await session.commit()
    await _announce(request)
    return out


@router.get("", response_model=PlacementList)
async def list_placements(session: SessionDep) -> PlacementList:
    return PlacementList(placements=await service.list_placements(session))


@router.get("/{name}", response_model=PlacementOut, responses=NOT_FOUND)
async def get_placement(name: NamePath, session: SessionDep) -> PlacementOut:
    return await service.get_placement(session, name)


@router.delete("/{name}", status_code=204, responses=NOT_FOUND)
async def delete_placement(name: NamePath, request: Request, session: SessionDep) -> Response:
    await service.delete_placement(session, name)
    await session.commit()
    await _announce(request)
    return Response(status_code=204)
