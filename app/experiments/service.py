"""Experiment storage: Postgres rows validated against their placement, announced with the placements'
epoch so serving reloads both together."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, PlacementNotFound, ValidationFailed
from app.experiments import assign
from app.experiments.models import Experiment
from app.experiments.schemas import ExperimentIn, ExperimentOut, Overrides, Status
from app.placements import service as placement_service
from app.placements.models import Placement
from app.placements.schemas import PlacementIn

SCORING = ("alpha", "strategy")


class ExperimentNotFound(NotFound):
    code = "ExperimentNotFound"


def variant_spec(placement: dict[str, Any], overrides: Overrides) -> PlacementIn:
    """The placement's rules with this variant's fields in place of its own (raises ValidationError)."""
    fields = overrides.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=set(SCORING))
    return PlacementIn.model_validate({**placement, **fields})


def status(row: Experiment, now: datetime | None = None) -> Status:
    now = now or datetime.now(UTC)
    if row.stopped_at is not None:
        return "stopped"
    if now < row.starts_at:
        return "scheduled"
    return "running" if now < row.ends_at else "ended"


def _out(row: Experiment) -> ExperimentOut:
    return ExperimentOut.model_validate({
        **row.spec, "name": row.name, "placement": row.placement, "start": row.starts_at, "end": row.ends_at,
        "id": row.id, "status": status(row), "stopped_at": row.stopped_at, "created_at": row.created_at,
    })


async def create(session: AsyncSession, body: ExperimentIn) -> ExperimentOut:
    placement = await session.get(Placement, body.placement)
    if placement is None:
        raise PlacementNotFound(f"No placement `{body.placement}`.")
    errors: list[dict[str, Any]] = []
    for k, variant in enumerate(body.variants):
        try:
            spec = variant_spec(placement.spec, variant.overrides)
        except ValidationError as exc:
            errors += [{"loc": ["body", "variants", k, "overrides", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                       for e in exc.errors(include_url=False, include_context=False, include_input=False)]
            continue
        try:
            await placement_service.check_items(session, spec)
        except ValidationFailed as exc:
            found: list[dict[str, Any]] = exc.detail if isinstance(exc.detail, list) else []
            errors += [{**e, "loc": ["body", "variants", k, "overrides", *e["loc"][1:]]} for e in found]
    if errors:
        raise ValidationFailed(errors)
    spec_json = body.model_dump(mode="json", by_alias=True, include={"variants", "primary_metric"})
    row = Experiment(name=body.name, placement=body.placement, spec=spec_json, salt=secrets.token_hex(8),
                     starts_at=body.start, ends_at=body.end)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return _out(row)


async def get_row(session: AsyncSession, experiment_id: int) -> Experiment:
    row = await session.get(Experiment, experiment_id)
    if row is None:
        raise ExperimentNotFound(f"No experiment {experiment_id}.")
    return row


async def get(session: AsyncSession, experiment_id: int) -> ExperimentOut:
    return _out(await get_row(session, experiment_id))


async def list_all(session: AsyncSession) -> list[ExperimentOut]:
    rows = await session.execute(select(Experiment).order_by(Experiment.id))
    return [_out(r) for r in rows.scalars()]


async def stop(session: AsyncSession, experiment_id: int) -> ExperimentOut:
    row = await get_row(session, experiment_id)
    if row.stopped_at is None:
        await session.execute(update(Experiment).where(Experiment.id == experiment_id)
                              .values(stopped_at=datetime.now(UTC)))
        await session.refresh(row)
    return _out(row)


@dataclass(frozen=True)
class Arm:
    name: str
    spec: PlacementIn
    alpha: float | None
    strategy: str | None


@dataclass(frozen=True)
class Live:
    """An experiment as serving needs it: its arms with their rules merged, the cut points, the window."""

    id: int
    salt: str
    arms: tuple[Arm, ...]
    cuts: tuple[float, ...]
    starts_at: float
    ends_at: float

    def arm(self, user_id: str) -> tuple[int, Arm]:
        k = assign.variant_index(self.id, self.salt, user_id, self.cuts)
        return k, self.arms[k]


async def load_live(session: AsyncSession, placements: dict[str, PlacementIn]) -> dict[str, Live]:
    """Placement -> its experiment that is running or will start (the latest created, should two
    overlap), for the serving cache; each arm's rules over the placement's current ones."""
    rows = await session.execute(
        select(Experiment).where(Experiment.stopped_at.is_(None), Experiment.ends_at > datetime.now(UTC),
                                 Experiment.placement.in_(list(placements))).order_by(Experiment.id)
    )
    live: dict[str, Live] = {}
    for row in rows.scalars():
        base = placement_service.stored(placements[row.placement])
        body = ExperimentIn.model_validate({**row.spec, "name": row.name, "placement": row.placement,
                                            "start": row.starts_at, "end": row.ends_at})
        arms = []
        for v in body.variants:
            try:
                spec = variant_spec(base, v.overrides)
            except ValidationError:  # the placement changed under the experiment: serve its rules
                spec = placements[row.placement]
            arms.append(Arm(v.name, spec, v.overrides.alpha, v.overrides.strategy))
        live[row.placement] = Live(row.id, row.salt, tuple(arms), tuple(assign.bounds([v.weight for v in
                                   body.variants])), row.starts_at.timestamp(), row.ends_at.timestamp())
    return live
