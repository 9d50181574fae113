from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from redis.exceptions import RedisError

from app.auth.deps import require
from app.db import SessionDep
from app.experiments import exposures, results, service, stats
from app.experiments.schemas import ExperimentIn, ExperimentList, ExperimentOut
from app.fallback import note_redis_fallback
from app.http import NOT_FOUND
from app.placements import service as placement_service

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], dependencies=[Depends(require("admin"))])
IdPath = Annotated[int, Path(ge=1, le=2**62)]


async def _announce(request: Request) -> None:
    """Serving caches experiments with the placements: moving their epoch reloads both."""
    try:
        await placement_service.announce(request.app.state.redis, request.app.state.keys)
    except (RedisError, OSError):
        note_redis_fallback(request.app.state, "experiments.announce")


@router.post("", status_code=201, response_model=ExperimentOut, responses=NOT_FOUND)
async def create_experiment(body: ExperimentIn, request: Request, session: SessionDep) -> ExperimentOut:
    """Start an A/B test on a placement; the first variant is the control. Shoppers are assigned by a
    hash of (experiment, salt, shopper id) in proportion to the weights."""
    out = await service.create(session, body)
    await session.commit()
    await _announce(request)
    return out


@router.get("", response_model=ExperimentList)
async def list_experiments(session: SessionDep) -> ExperimentList:
    return ExperimentList(experiments=await service.list_all(session))


@router.get("/{experiment_id}", response_model=ExperimentOut, responses=NOT_FOUND)
async def get_experiment(experiment_id: IdPath, session: SessionDep) -> ExperimentOut:
    return await service.get(session, experiment_id)


@router.post("/{experiment_id}/stop", response_model=ExperimentOut, responses=NOT_FOUND)
async def stop_experiment(experiment_id: IdPath, request: Request, session: SessionDep) -> ExperimentOut:
    """Stop serving the variants (the placement's own rules serve again); results stay readable."""
    out = await service.stop(session, experiment_id)
    await session.commit()
    await _announce(request)
    return out


@router.get("/{experiment_id}/results", response_model=results.Results, responses=NOT_FOUND)
async def experiment_results(
    experiment_id: IdPath, request: Request, session: SessionDep,
    mde: Annotated[float, Query(gt=0, le=10, description="Relative lift the power note is for.")] = stats.MDE,
) -> results.Results:
    """Per-variant counts, lifts against control with 95 % CIs and p-values, and the SRM check. The
    exposures waiting in Redis are flushed first, so the figures include every served list."""
    row = await service.get_row(session, experiment_id)
    try:
        await exposures.flush(session, request.app.state.redis, request.app.state.keys)
    except (RedisError, OSError):
        note_redis_fallback(request.app.state, "experiments.flush")
    return await results.compute(session, row, mde)
