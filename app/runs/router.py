from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.auth.deps import require
from app.db import SessionDep
from app.runs import service
from app.runs.schemas import ModelsOut, RebuildQueued, RunOut

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsOut, dependencies=[Depends(require("read"))])
async def get_models(request: Request, session: SessionDep) -> ModelsOut:
    """The serving model version with its offline metrics, and the history of rebuilds."""
    version, meta = await service.current_version(request.app.state.redis, request.app.state.keys)
    runs = [RunOut.model_validate(r) for r in await service.recent_runs(session)]
    current = next((r for r in runs if r.version == version and r.status == "succeeded"), None)
    return ModelsOut(current_version=version, meta=meta, current=current, runs=runs)


@router.post("/rebuild", response_model=RebuildQueued, status_code=202,
             dependencies=[Depends(require("admin"))])
async def rebuild(request: Request, session: SessionDep) -> RebuildQueued:
    """Queue a rebuild; answers at once with the job id (see `GET /v1/models` for its progress)."""
    run = await service.request_rebuild(session, request.app.state.redis, request.app.state.keys)
    return RebuildQueued(job_id=run.id, status=run.status)
