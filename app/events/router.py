from __future__ import annotations

import json
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.auth.deps import require
from app.auth.service import Principal
from app.errors import Forbidden, PayloadTooLarge
from app.events import service, validate
from app.events.schemas import BROWSER_EVENT_TYPES, EventBatchIn, EventType, IngestResult
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


_BACKEND_ONLY = frozenset(get_args(EventType)) - BROWSER_EVENT_TYPES


def _refuse_backend_types(events: list[Any]) -> None:
    """403 for a `track` key's batch holding a backend-only type (purchase, rating): a whole-batch
    refusal, not a per-event rejection in a 200, so a page misusing its key shows up in the browser
    console and in the access log instead of silently losing those events forever."""
    refused = sorted({str(e["type"]) for e in events if isinstance(e, dict) and e.get("type") in _BACKEND_ONLY})
    if refused:
        raise Forbidden(
            f"A `track` key may post only {', '.join(sorted(BROWSER_EVENT_TYPES))} events; "
            f"send {', '.join(refused)} from the shop's backend with an `ingest` key."
        )


@router.post(
    "/events",
    response_model=IngestResult,
    summary="Ingest a batch of 1 to 10,000 events",
    openapi_extra=_BODY,
)
async def post_events(
    request: Request, principal: Annotated[Principal, Depends(require("ingest", "track"))]
) -> IngestResult:
    """Store events; report accepted, duplicate (by `event_id`) and rejected ones with a reason each.

    One bad event never sinks its batch. Unknown users and items are created on the fly. A `track` key
    (browser) may post only browser-observable types; purchase and rating answer 403 to it.
    """
    state = request.app.state
    body = await request.body()
    valid = validate.valid_body_events(body)
    events: list[Any] = _events_of(body) if valid is None else valid
    if len(events) > state.settings.max_batch_events:
        raise PayloadTooLarge(
            f"{len(events)} events in one call; the limit is {state.settings.max_batch_events}."
        )
    if not principal.allows("ingest"):
        _refuse_backend_types(events)
    result = await service.ingest(
        state.engine, state.redis, state.keys, state.settings, events, validated=valid is not None
    )
    if not result.realtime_updated:
        await note_skipped_write(state, "events.realtime")
    return result
