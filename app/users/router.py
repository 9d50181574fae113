from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from app.auth.deps import require
from app.common.types import ID_PATTERN
from app.db import SessionDep
from app.errors import UserNotFound
from app.http import NOT_FOUND
from app.users import export, service
from app.users.schemas import MergeIn, MergeOut, UserErased, UserExport, UserIn, UserOut

router = APIRouter(prefix="/v1/users", tags=["users"])
UserIdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]


@router.put("/{user_id}", response_model=UserOut, dependencies=[Depends(require("ingest"))])
async def put_user(
    user_id: UserIdPath, body: UserIn, session: SessionDep
) -> UserOut:
    """Create a user or replace their attributes."""
    await service.upsert_user(session, user_id, body)
    return await service.get_user(session, user_id)


@router.get(
    "/{user_id}", response_model=UserOut, dependencies=[Depends(require("read"))], responses=NOT_FOUND
)
async def get_user(user_id: UserIdPath, session: SessionDep) -> UserOut:
    return await service.get_user(session, user_id)


@router.delete(
    "/{user_id}", response_model=UserErased, dependencies=[Depends(require("admin"))], responses=NOT_FOUND
)
async def delete_user(
    user_id: UserIdPath, request: Request, session: SessionDep
) -> UserErased:
    """Erase the user (GDPR): their row, every event of theirs and all their Redis state.

    Redis is erased before the Postgres deletion commits: if Redis is unreachable the answer is 503
    (nothing deleted, retry later), never a success that left real-time state behind.
    """
    state = request.app.state
    try:
        events = await service.erase_user_rows(session, user_id)
    except UserNotFound:
        # Nothing in Postgres, but a racing ingest may have left real-time state: clear it anyway.
        await service.erase_user_state(state.redis, state.keys, user_id)
        raise
    await service.erase_user_state(state.redis, state.keys, user_id)
    await session.commit()
    return UserErased(user_id=user_id, events_deleted=events)


@router.get(
    "/{user_id}/export", response_model=UserExport, dependencies=[Depends(require("admin"))],
    responses=NOT_FOUND,
)
async def export_user(
    user_id: UserIdPath, request: Request, session: SessionDep
) -> UserExport:
    """Everything stored about the user (GDPR access): their row, all their events, their Redis state."""
    return await export.export_user(session, request.app.state.redis, request.app.state.keys, user_id)


@router.post(
    "/{user_id}/merge", response_model=MergeOut, dependencies=[Depends(require("ingest"))],
    responses=NOT_FOUND,
)
async def merge_user(
    user_id: UserIdPath, body: MergeIn, request: Request, session: SessionDep
) -> MergeOut:
    """Move an anonymous user's events (and real-time state) to a known user, then drop the anonymous one.

    Redis is merged before Postgres commits (the Redis merge is idempotent): with Redis unreachable the
    answer is 503 and nothing moved, so no real-time state is left under the dropped id.
    """
    moved = await service.merge_rows(session, user_id, body.from_user_id)
    state = request.app.state
    await service.merge_state(state.redis, state.keys, user_id, body.from_user_id,
                              state.settings.history_length)
    await session.commit()
    return MergeOut(user_id=user_id, merged_from=body.from_user_id, events_moved=moved)
