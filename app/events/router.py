from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.auth.deps import require
from app.errors import PayloadTooLarge
from app.events import service, validate
from app.events.schemas import EventBatchIn, IngestResult
from app.fallback import note_skipped_write

router = APIRouter(prefix="/v1", tags=["events"])

# The body is read here rather than declared as a parameter: FastAPI would decode it with the standard
# json module and validate it twice, a third of a 1,000-event call's Python time. Documented as usual.
_BODY = {"requestBody": {"required": True,
                         "content": {"application/json": {"schema": EventBatchIn.model_json_schema()}}}}


def _events_of(body: bytes) -> list[Any]:
    """The raw events of a body whose batch-level shape is right; FastAPI's 400/422 otherwise."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        data = json.loads(body)  # not orjson: a lone surrogate must reject its event, not the body
    except (ValueError, RecursionError):
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]) \
            from None
    try:
        return EventBatchIn.model_validate(data).events
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


@router.post(
    "/events",
    response_model=IngestResult,
    dependencies=[Depends(require("ingest"))],
    summary="Ingest a batch of 1 to 10,000 events",
    openapi_extra=_BODY,
)
async def post_events(request: Request) -> IngestResult:
    """Store events; report accepted, duplicate (by `event_id`) and rejected ones with a reason each.

    One bad event never sinks its batch. Unknown users and items are created on the fly.
    """
    state = request.app.state
    body = await request.body()
    valid = validate.valid_body_events(body)
    events: list[Any] = _events_of(body) if valid is None else valid
    if len(events) > state.settings.max_batch_events:
        raise PayloadTooLarge(
            f"{len(events)} events in one call; the limit is {state.settings.max_batch_events}."
        )
    result = await service.ingest(
        state.engine, state.redis, state.keys, state.settings, events, validated=valid is not None
    )
    if not result.realtime_updated:
        await note_skipped_write(state, "events.realtime")
    return result
