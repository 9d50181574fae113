"""The dashboard's experiments panel: every running experiment's results (flushed by the worker)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.experiments import results
from app.experiments.models import Experiment


async def running(session: AsyncSession) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = await session.execute(
        select(Experiment).where(Experiment.stopped_at.is_(None), Experiment.starts_at <= now,
                                 Experiment.ends_at > now).order_by(Experiment.id)
    )
    panels = []
    for row in rows.scalars():
        res = await results.compute(session, row)
        panels.append({"id": row.id, "name": row.name, "placement": row.placement,
                       "ends_at": row.ends_at.strftime("%Y-%m-%d %H:%M UTC"), **res.model_dump(mode="json")})
    return panels
