from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.auth.deps import require
from app.errors import PayloadTooLarge
from app.events import service
from app.events.schemas import EventBatchIn, IngestResult
from app.fallback import note_redis_fallback

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=IngestResult,
    dependencies=[Depends(require("ingest"))],
    summary="Ingest a batch of 1 to 10,000 events",
)
async def post_events(batch: EventBatchIn, request: Request) -> IngestResult:
    """Store events; report accepted, duplicate (by `event_id`) and rejected ones with a reason each.

    One bad event never sinks its batch. Unknown users and items are created on the fly.
    """
    state = request.app.state
    if len(batch.events) > state.settings.max_batch_events:
        raise PayloadTooLarge(
            f"{len(batch.events)} events in one call; the limit is {state.settings.max_batch_events}."
        )
    result = await service.ingest(state.engine, state.redis, state.keys, state.settings, batch.events)
    if not result.realtime_updated:
        note_redis_fallback(state, "events.realtime")
    return result
